"""The build sandbox: what a command composer runs (a hostile package, a script) can reach."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tardist.layout import scratch_root
from worker.composer_install import composer_sandbox, error_line
from worker.sandbox import Sandbox, bwrap_command, find_bwrap, run_sandboxed

# Tries to read and write each folder given as an argument; prints one line per attempt.
PROBE = """
for target in "$@"; do
  if cat "$target/secret" >/dev/null 2>&1; then echo "read $target"; fi
  if ls "$target" 2>/dev/null | grep -q secret; then echo "listed $target"; fi
  if (echo pwned > "$target/pwned") 2>/dev/null; then echo "wrote $target"; fi
done
echo done > ./written-in-scratch && echo "wrote scratch"
echo mine > /tmp/private-tmp && echo "wrote tmp"
echo "env ${SECRET_TOKEN:-scrubbed}"
"""


def bwrap_works() -> str | None:
    """Why bwrap cannot run here (no bwrap, no user namespaces, ...), or None when it can."""
    bwrap = find_bwrap()
    if bwrap is None:
        return "bubblewrap is not installed (./scripts/test installs it)"
    probe = subprocess.run([bwrap, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else f"bwrap cannot create namespaces here: {probe.stderr.strip()}"


@pytest.fixture
def kept(deployment, tmp_path, monkeypatch, request):
    """Each folder a build must not see, holding a secret: the deployment's mirrors, tarballs, database,
    configuration, COMPOSER_HOME, an operator home and another build's scratch folder."""
    # Outside /tmp, which bwrap covers anyway: the temp folder (TMPDIR=/var/tmp), the configuration, COMPOSER_HOME.
    outside = Path(tempfile.mkdtemp(prefix="tardist-sandbox-test-", dir="/var/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(outside))
    monkeypatch.setattr(tempfile, "tempdir", str(outside / "var-tmp"))
    (outside / "var-tmp").mkdir()
    settings = dataclasses.replace(deployment.settings(), config_file=outside / "etc-tardist" / "tardist.toml",
                                   composer_home=outside / "operator-composer-home")
    home = tmp_path / "operator-home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    folders = [settings.mirrors, settings.tarballs, settings.database.parent, home, settings.config_file.parent,
               settings.composer_home, scratch_root(settings) / "other-build"]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "secret").write_text("do not read\n")
    settings.database.write_bytes(b"SQLite format 3\0")
    return settings, folders


def probe(settings, folders, scratch: Path) -> list[str]:
    sandbox = composer_sandbox(settings, "/bin/sh", scratch)
    finished = run_sandboxed(["/bin/sh", "-c", PROBE, "probe", *map(str, folders)], sandbox, scratch / "src", 30)
    assert finished.returncode == 0, finished.output
    return finished.output.splitlines()


@pytest.fixture
def scratch_of():
    """Make a build's scratch folder as the composer step does; remove them all afterwards."""
    made = []

    def make(settings) -> Path:
        scratch = scratch_root(settings) / "build"
        (scratch / "src").mkdir(parents=True)
        made.append(scratch_root(settings))
        return scratch
    yield make
    for root in made:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.composer
def test_in_the_bwrap_sandbox_nothing_tardist_keeps_is_visible_or_writable(kept, scratch_of):
    reason = bwrap_works()
    if reason:
        pytest.skip(reason)
    settings, folders = kept
    settings = dataclasses.replace(settings, build_sandbox="bwrap")
    scratch = scratch_of(settings)
    lines = probe(settings, folders, scratch)
    assert lines == ["wrote scratch", "wrote tmp", "env scrubbed"]
    sandbox = composer_sandbox(settings, "/bin/sh", scratch)
    assert os.listdir("/var/log")  # the host's logs, empty in the sandbox
    assert run_sandboxed(["/bin/ls", "-A", "/var/log"], sandbox, scratch / "src", 30).output == ""
    assert (scratch / "src/written-in-scratch").read_text() == "done\n"
    assert not Path("/tmp/private-tmp").exists()
    assert all((folder / "secret").read_text() == "do not read\n" for folder in folders)
    assert settings.database.read_bytes() == b"SQLite format 3\0"
    assert not any((folder / "pwned").exists() for folder in folders)


@pytest.mark.composer
def test_in_the_bwrap_sandbox_no_process_of_the_host_is_visible(kept, scratch_of):
    """A new PID namespace (--unshare-all): tardist's own environment is not in /proc/<pid>/environ."""
    reason = bwrap_works()
    if reason:
        pytest.skip(reason)
    settings = dataclasses.replace(kept[0], build_sandbox="bwrap")
    scratch = scratch_of(settings)
    sandbox = composer_sandbox(settings, "/bin/sh", scratch)
    script = f'cat /proc/{os.getpid()}/environ; cat /proc/1/environ; echo; ls /proc | grep -c "^[0-9]"'
    finished = run_sandboxed(["/bin/sh", "-c", script], sandbox, scratch / "src", 30)
    assert "hunter2" not in finished.output and "SECRET_TOKEN" not in finished.output
    assert int(finished.output.split()[-1]) <= 4, finished.output  # bwrap, sh, ls, grep: none of the host's


def test_composer_gets_the_operators_credentials_in_its_environment_alone(kept, scratch_of):
    settings = kept[0]
    home = settings.composer_home
    (home / "auth.json").write_text(json.dumps({"http-basic": {"a.example": {"username": "u", "password": "p1"}}}))
    (home / "config.json").write_text(json.dumps({"config": {"secure-http": False, "github-oauth": {
        "github.com": "p2"}}, "repositories": [{"packagist.org": False}]}))
    scratch = scratch_of(settings)
    sandbox = composer_sandbox(settings, "/bin/sh", scratch)
    assert json.loads(sandbox.env["COMPOSER_AUTH"]) == {
        "http-basic": {"a.example": {"username": "u", "password": "p1"}}, "github-oauth": {"github.com": "p2"}}
    assert sandbox.env["COMPOSER_HOME"] == str(scratch / "composer-home")
    assert json.loads((scratch / "composer-home" / "config.json").read_text()) == {
        "config": {"secure-http": False}, "repositories": [{"packagist.org": False}]}
    assert settings.composer_home in sandbox.hidden and Path("/var/log") in sandbox.hidden


def test_without_a_sandbox_the_environment_is_still_scrubbed(kept, scratch_of):
    settings, folders = kept
    settings = dataclasses.replace(settings, build_sandbox="none")
    lines = probe(settings, [], scratch_of(settings))
    assert lines == ["wrote scratch", "wrote tmp", "env scrubbed"]
    Path("/tmp/private-tmp").unlink()


def test_the_bwrap_command_line_hides_then_shows_again(tmp_path):
    sandbox = Sandbox("bwrap", writable=(tmp_path / "w",), readable=(tmp_path,), hidden=(tmp_path, Path("/")),
                      env={"A": "1"})
    command = bwrap_command("bwrap", ["composer", "install"], sandbox, tmp_path / "w")
    text = " ".join(command)
    assert f"--perms 0555 --tmpfs {tmp_path} --ro-bind {tmp_path} {tmp_path} --bind {tmp_path}/w {tmp_path}/w" in text
    assert "--tmpfs / " not in text  # hiding / would leave nothing to run
    assert "--die-with-parent" in command and "--new-session" in command and "--clearenv" in command
    assert command[-3:] == ["--", "composer", "install"]


def test_a_tool_that_cannot_start_fails_with_a_readable_line(tmp_path):
    finished = run_sandboxed(["/no/such/composer"], Sandbox("none"), tmp_path, 5)
    assert finished.returncode != 0 and "/no/such/composer" in error_line(finished.output)


def test_composer_error_lines():
    boxed = ("\nIn JsonFile.php line 347:\n                 \n"
             "  \"./composer.json\" does not contain valid JSON  \n  Parse error\n")
    assert error_line(boxed) == '"./composer.json" does not contain valid JSON Parse error'
    assert error_line("Loading\n\n  Problem 1\n    - Root composer.json requires a/b, it could not be found.\n") == \
        "Root composer.json requires a/b, it could not be found."
    assert error_line("one\nthe last words\n\n") == "the last words"
