"""git_config: operator git settings reach every git command; the submodule allow-list still holds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile

import pytest
from helpers import TARDIST, directory_source

from loopback.gitdaemon import git_daemon
from loopback.servers import closed_port
from tardist.settings import SettingsError, load_settings
from worker.git import run_git


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


REFUSED = [
    # run a program
    "core.sshCommand", "core.fsmonitor", "credential.helper", "credential.https://x.org.helper", "alias.fetch",
    "filter.lfs.smudge", "core.gitProxy", "core.askPass", "core.pager", "pager.log", "sendemail.smtpServer",
    "imap.tunnel", "browser.firefox.cmd", "man.viewer.cmd", "guitool.x.cmd", "submodule.lib.update",
    "remote.https://x.org/r.vcs", "remote.https://x.org/r.url", "uploadpack.packObjectsHook",
    # read another file, or copy one into a mirror
    "include.path", "includeIf.gitdir:/x.path", "init.templateDir", "http.cookieFile", "http.saveCookies",
    "http.sslCert", "http.sslKey", "http.https://x.org.sslKey", "http.proxySSLCert", "fetch.bundleURI",
    "fetch.fsck.skipList", "core.attributesFile", "core.excludesFile", "mailmap.file", "commit.template",
    "http.extraHeader",
    # undo what tardist relies on
    "protocol.ext.allow", "protocol.allow", "core.hooksPath", "fetch.unpackLimit", "gc.autoDetach",
    "url.insteadOf", "HTTP.SSLKEY",
]


@pytest.mark.parametrize("key", REFUSED)
def test_settings_not_on_the_allow_list_are_refused_with_what_is_accepted(tmp_path, key):
    with pytest.raises(SettingsError, match=rf"tardist.toml: key 'git_config': '{re.escape(key)}' is refused") as err:
        settings_from(tmp_path, f'git_config = {{ "{key}" = "x" }}\n')
    assert "url.<base>.insteadOf" in str(err.value) and "http[.<url>].proxy" in str(err.value)


@pytest.mark.parametrize("key", [
    "url.https://mirror.example.org/.insteadOf", "URL.git://x/.pushInsteadOf", "http.proxy",
    "http.https://gerrit.example.org/.proxy", "http.sslCAInfo", "http.https://x.org/.sslVerify", "http.sslVerify",
    "http.version", "http.postBuffer", "http.lowSpeedLimit", "http.lowSpeedTime", "protocol.version",
    "core.compression", "pack.windowMemory", "pack.threads", "core.packedGitLimit",
])
def test_the_settings_operators_need_are_accepted(tmp_path, key):
    assert settings_from(tmp_path, f'git_config = {{ "{key}" = "1" }}\n').git_config == ((key, "1"),)


def test_a_refused_setting_from_the_environment_names_the_variable(tmp_path):
    environ = {"TARDIST_GIT_CONFIG": '{"init.templateDir": "/tmp/evil"}'}
    with pytest.raises(SettingsError) as err:
        settings_from(tmp_path, 'git_config = { "http.proxy" = "http://127.0.0.1:3128" }\n', environ)
    assert str(err.value).startswith("environment TARDIST_GIT_CONFIG: key 'git_config': 'init.templateDir' is "
                                     "refused"), err.value
    assert "tardist.toml" not in str(err.value)


def test_a_refused_vcs_helper_never_runs(deployment, upstream, tmp_path):
    """remote.<url>.vcs makes git run git-remote-<vcs> from PATH: refused at load, before any git runs."""
    upstream("Cite")
    helpers = tmp_path / "bin"
    helpers.mkdir()
    marker = tmp_path / "MARKER"
    (helpers / "git-remote-evil").write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    (helpers / "git-remote-evil").chmod(0o755)
    url = "https://127.0.0.1:9/r"
    deployment.write_config(
        f'git_config = {{ "remote.{url}.vcs" = "evil", "remote.{url}.url" = "{url}" }}\n'
        f'[[source]]\nkind = "extensions"\ntype = "list"\nrepos = {{ Cite = "{url}" }}\n')
    env = {**os.environ, "PATH": f"{helpers}:{os.environ['PATH']}"}
    result = subprocess.run([TARDIST, "sync"], cwd=deployment.root, env={**env, "TARDIST_CONFIG": str(
        deployment.config)}, capture_output=True, text=True, timeout=60)
    assert not marker.exists(), "git ran the helper"
    assert result.returncode == 2 and f"'remote.{url}.vcs' is refused" in result.stderr, result.stderr


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
    config = (("http.proxy", "http://127.0.0.1:3128"), ("fetch.unpackLimit", "1000"))
    assert run_git(["config", "--get", "http.proxy"], cwd=tmp_path, config=config).decode().strip() == "http://127.0.0.1:3128"
    limits = run_git(["config", "--get-all", "fetch.unpackLimit"], cwd=tmp_path, config=config)
    assert limits.decode().split() == ["1000", "1"]
    assert run_git(["config", "--get", "fetch.unpackLimit"], cwd=tmp_path, config=config).decode().strip() == "1"


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


def test_git_config_reaches_the_head_check_and_the_fetch_of_a_repository(deployment, upstream):
    """The settings reach git as an argument at every step of a sync, not only for submodules."""
    cite = upstream("Cite")
    dead = f"https://127.0.0.1:{closed_port()}/r/"
    listed = f'[[source]]\nkind = "extensions"\ntype = "list"\nrepos = {{ Cite = "{dead}Cite" }}\n'
    deployment.write_config(f'git_config = {{ "url.{cite.path.parent}/.insteadOf" = "{dead}" }}\n' + listed)
    result = deployment.sync()
    assert deployment.summary(result)["built"] == 1, result.stderr
    assert (deployment.root / "tarballs/extensions" / f"Cite-master-{cite.head()[:7]}.tar.gz").is_file()
