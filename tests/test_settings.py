"""Settings: defaults, the TOML file, TARDIST_* environment, overrides, and readable errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tardist.settings import SETTINGS, SettingsError, load_settings


def test_defaults_when_no_file(tmp_path):
    settings = load_settings(environ={})
    assert settings.database == tmp_path / "instance/tardist.sqlite3"
    assert settings.branches == ("master", "REL1_45", "REL1_44", "REL1_43", "REL1_39")
    assert settings.jobs == 4 and settings.retention_days == 7 and settings.tarball_url == "/dist"
    assert settings.sources == ()


def test_file_then_environment_then_overrides(tmp_path):
    config = tmp_path / "custom.toml"
    config.write_text('jobs = 8\ntarball_url = "https://example.org/dist/"\nmirrors = "data/mirrors"\n'
                      '[[source]]\nkind = "skins"\ntype = "list"\nrepos = { Vector = "https://example.org/Vector" }\n')
    settings = load_settings(environ={"TARDIST_CONFIG": str(config), "TARDIST_JOBS": "3",
                                      "TARDIST_BRANCHES": "master, REL1_45"})
    assert settings.config_file == config
    assert settings.jobs == 3 and settings.branches == ("master", "REL1_45")
    assert settings.tarball_url == "https://example.org/dist"
    assert settings.mirrors == Path.cwd() / "data/mirrors"
    assert settings.sources[0].repos == {"Vector": "https://example.org/Vector"}
    assert load_settings(config, overrides={"jobs": 1}, environ={"TARDIST_JOBS": "3"}).jobs == 1


@pytest.mark.parametrize("text, message", [
    ("jobs = true", "key 'jobs': expected a whole number >= 0, got True"),
    ("branches = 'master'", "key 'branches': expected a list of strings"),
    ("branches = ['../x']", "'../x' is not a plain branch name"),
    ("branches = []", "key 'branches': expected at least one branch"),
    ("git_timeout = 0", "key 'git_timeout': expected a whole number >= 1"),
    ("heads_timeout = 0", "key 'heads_timeout': expected a whole number >= 1"),
    ("build_waiters = 0", "key 'build_waiters': expected a whole number >= 1"),
    ("submodule_protocols = ['ext']", "'ext' is not one of file, git, http, https, ssh"),
    ("nope = 1", "unknown key 'nope'"),
    ("build_sandbox = 'docker'", "key 'build_sandbox': expected one of bwrap, none, got 'docker'"),
    ("composer_timeout = 0", "key 'composer_timeout': expected a whole number >= 1"),
    ("[[source]]\nkind = 'Extensions'\ntype = 'list'\nrepos = {}", "source[0]: key 'kind': expected a lower-case word"),
    ("[[source]]\nkind = 'skins'\ntype = 'list'", "source[0]: key 'repos' is required for type 'list'"),
    ("[[source]]\nkind = 'skins'\ntype = 'list'\nrepos = { 'a/b' = 'x' }", "'a/b' is not a plain repository name"),
    ("[[source]]\nkind = 'skins'\ntype = 'gerrit'\nurl = 'u'\nprefix = 'p'\npath = 'x'",
     "source[0]: unknown key 'path' for type 'gerrit'"),
    ("jobs = ", "not valid TOML"),
])
def test_errors_name_the_file_the_key_and_what_was_expected(tmp_path, text, message):
    config = tmp_path / "tardist.toml"
    config.write_text(text + "\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(config, environ={})
    assert str(caught.value).startswith(str(config)) and message in str(caught.value)


def test_composer_keys_default_to_composer_on_path_and_bwrap_when_installed(tmp_path):
    settings = load_settings(environ={})
    assert settings.composer == "composer" and settings.composer_timeout == 300
    assert settings.composer_home == tmp_path / "mirrors/_composer/home"
    assert settings.build_sandbox == ("bwrap" if shutil.which("bwrap") else "none")
    settings = load_settings(environ={"TARDIST_COMPOSER": "", "TARDIST_BUILD_SANDBOX": "none",
                                      "TARDIST_COMPOSER_HOME": "/etc/composer"})
    assert (settings.composer, settings.build_sandbox, settings.composer_home) == ("", "none", Path("/etc/composer"))


def test_a_head_check_never_waits_longer_than_any_git_network_operation():
    assert load_settings(environ={}).heads_timeout == 20
    assert load_settings(environ={"TARDIST_GIT_TIMEOUT": "5"}).heads_timeout == 5
    assert load_settings(environ={"TARDIST_GIT_TIMEOUT": "60", "TARDIST_HEADS_TIMEOUT": "7"}).heads_timeout == 7


def test_environment_errors_name_the_variable():
    with pytest.raises(SettingsError, match="environment TARDIST_JOBS: expected a whole number, got 'lots'"):
        load_settings(environ={"TARDIST_JOBS": "lots"})
    with pytest.raises(SettingsError, match="environment TARDIST_COLOUR: unknown setting"):
        load_settings(environ={"TARDIST_COLOUR": "blue"})
    with pytest.raises(SettingsError, match="environment TARDIST_JOBS: key 'jobs': expected a whole number >= 0"):
        load_settings(environ={"TARDIST_JOBS": "-3"})


def test_the_configuration_page_documents_every_setting():
    readme = (Path(__file__).parents[1] / "docs/configuration.md").read_text()
    table = readme[readme.index("| key | default | meaning |"):]
    table = table[:table.index("\n\n")]
    undocumented = [key for key in SETTINGS if f"`{key}`" not in table]
    assert undocumented == []
