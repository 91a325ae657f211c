"""git_config: operator git settings reach every git command; the submodule allow-list still holds."""

from __future__ import annotations

import json
import tarfile

import pytest
from conftest import directory_source
from gitservers import closed_port, git_daemon

from tardist.settings import SettingsError, load_settings
from worker.mirror import run_git, use_git_config


def settings_from(tmp_path, text: str, environ: dict | None = None):
    config = tmp_path / "tardist.toml"
    config.write_text(text)
    return load_settings(config, environ=environ or {})


def test_git_config_is_read_in_order_with_booleans_and_numbers_as_git_spells_them(tmp_path):
    settings = settings_from(tmp_path, 'git_config = { "url.https://mirror.example.org/.insteadOf" = '
                                       '"https://gerrit.wikimedia.org/r/", "http.sslVerify" = false, '
                                       '"http.lowSpeedTime" = 30 }\n')
    assert settings.git_config == (("url.https://mirror.example.org/.insteadOf", "https://gerrit.wikimedia.org/r/"),
                                   ("http.sslVerify", "false"), ("http.lowSpeedTime", "30"))
    from_env = settings_from(tmp_path, "", {"TARDIST_GIT_CONFIG": '{"http.proxy": "http://127.0.0.1:3128"}'})
    assert from_env.git_config == (("http.proxy", "http://127.0.0.1:3128"),)
    assert settings_from(tmp_path, "").git_config == ()


@pytest.mark.parametrize("key", [
    "core.sshCommand", "core.fsmonitor", "credential.helper", "credential.https://x.org.helper", "alias.fetch",
    "include.path", "includeIf.gitdir:/x.path", "protocol.ext.allow", "protocol.allow", "core.hooksPath",
    "filter.lfs.smudge", "core.gitProxy", "fetch.unpackLimit", "gc.autoDetach", "core.askPass",
])
def test_settings_that_run_programs_or_undo_safety_are_refused(tmp_path, key):
    with pytest.raises(SettingsError, match=rf"tardist.toml: key 'git_config': '{key}' is refused"):
        settings_from(tmp_path, f'git_config = {{ "{key}" = "x" }}\n')


@pytest.mark.parametrize("text, message", [
    ('git_config = { "proxy" = "x" }', "is not a git setting name"),
    ('git_config = { "http.proxy" = "a\\nb" }', "expected a one-line string"),
    ('git_config = { "http.proxy" = ["a"] }', "expected a one-line string"),
    ('git_config = "http.proxy=x"', "key 'git_config': expected a table of git settings"),
])
def test_malformed_git_config_names_the_file_and_key(tmp_path, text, message):
    with pytest.raises(SettingsError, match=message):
        settings_from(tmp_path, text + "\n")
    with pytest.raises(SettingsError, match="environment TARDIST_GIT_CONFIG: expected a JSON object"):
        settings_from(tmp_path, "", {"TARDIST_GIT_CONFIG": "http.proxy=x"})


def test_every_git_command_sees_the_settings_and_the_safety_settings_still_win(tmp_path):
    try:
        use_git_config((("http.proxy", "http://127.0.0.1:3128"), ("fetch.unpackLimit", "1000")))
        assert run_git(["config", "--get", "http.proxy"], cwd=tmp_path).decode().strip() == "http://127.0.0.1:3128"
        assert run_git(["config", "--get-all", "fetch.unpackLimit"], cwd=tmp_path).decode().split() == ["1000", "1"]
        assert run_git(["config", "--get", "fetch.unpackLimit"], cwd=tmp_path).decode().strip() == "1"
    finally:
        use_git_config(())


@pytest.fixture
def pinned(tmp_path, upstream):
    """Cite pins a submodule whose .gitmodules URL (an https address nothing answers) holds Lib's commit."""
    lib = upstream("Lib", kind="libs", files={"lib.php": "<?php // the library\n"})
    cite = upstream("Cite")
    dead = f"https://127.0.0.1:{closed_port()}/r/"
    cite.pin_submodule("vendor/lib", f"{dead}libs/Lib", lib.head())
    return dead, cite


def test_git_config_rewrites_a_submodule_url_to_a_local_git_daemon(deployment, pinned, tmp_path):
    dead, cite = pinned
    sources = directory_source("extensions", tmp_path / "upstream/extensions")
    deployment.write_config(sources, submodule_protocols=["https", "git"])
    failed = deployment.sync(check=False)
    assert failed.returncode == 1 and "cannot fetch https://127.0.0.1:" in failed.stderr
    with git_daemon(tmp_path / "upstream") as base:
        deployment.write_config(f'git_config = {{ "url.{base}/.insteadOf" = "{dead}" }}\n' + sources,
                                submodule_protocols=["https", "git"])
        result = deployment.sync()  # a new git_config: what failed is retried at once
    assert deployment.summary(result)["failed"] == 0, result.stderr
    file = deployment.root / "tarballs/extensions" / f"Cite-master-{cite.head()[:7]}.tar.gz"
    with tarfile.open(file) as tar:
        assert tar.extractfile("Cite/vendor/lib/lib.php").read() == b"<?php // the library\n"


def test_the_transport_allow_list_applies_to_the_rewritten_url(deployment, pinned, tmp_path):
    dead, _cite = pinned
    # https is allowed, and the URL in .gitmodules is https; git_config turns it into a file path: refused
    deployment.write_config(f'git_config = {{ "url.file://{tmp_path}/upstream/.insteadOf" = "{dead}" }}\n'
                            + directory_source("extensions", tmp_path / "upstream/extensions"),
                            submodule_protocols=["https"])
    result = deployment.sync(check=False)
    assert result.returncode == 1
    status = json.loads(deployment.cli("status").stdout)
    [error] = [e["error"] for e in status["branch_errors"] if e["name"] == "Cite"]
    assert "transport 'file' not allowed" in error, error
    assert not list(deployment.root.glob("tarballs/extensions/Cite-*"))
