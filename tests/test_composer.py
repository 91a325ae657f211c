"""The composer build step end to end: real composer, a local path repository, `tardist sync`, /info.

composer never reaches Packagist here: COMPOSER_HOME/config.json turns packagist.org
off and offers the packages under tmp_path/packages.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from conftest import TARDIST, Deployment, extension_files, git
from gitservers import closed_port

from worker.composer import scratch_root
from worker.sandbox import find_bwrap

pytestmark = pytest.mark.skipif(shutil.which("composer") is None,
                                reason="composer is not installed (./scripts/test installs it)")

PLUGIN_PHP = """<?php
namespace Acme\\Plugin;
use Composer\\Composer; use Composer\\IO\\IOInterface; use Composer\\Plugin\\PluginInterface;
class Plugin implements PluginInterface {
    public function activate(Composer $composer, IOInterface $io) {
        touch(getcwd() . '/vendor/ran-plugin'); touch('%s');
    }
    public function deactivate(Composer $composer, IOInterface $io) {}
    public function uninstall(Composer $composer, IOInterface $io) {}
}
"""


def sandboxes() -> list:
    """Both sandboxes where bwrap is installed; "none" alone (and a skip) where it is not."""
    return ["none", pytest.param("bwrap", marks=pytest.mark.skipif(find_bwrap() is None,
                                                                   reason="bubblewrap is not installed"))]


def make_package(root: Path, name: str, version: str, **fields) -> Path:
    """A package folder of the local path repository."""
    folder = root / name
    (folder / "src").mkdir(parents=True)
    (folder / "composer.json").write_text(json.dumps({"name": name, "version": version, **fields}))
    (folder / "src" / "Hello.php").write_text("<?php\nclass Hello {}\n")
    return folder


@pytest.fixture
def composer_home(tmp_path: Path) -> Path:
    """COMPOSER_HOME with a path repository of four packages (one a plugin) and packagist.org off."""
    packages = tmp_path / "packages"
    make_package(packages, "acme/hello", "1.2.3", autoload={"classmap": ["src/"]})
    make_package(packages, "acme/world", "2.0.0", require={"acme/hello": "^1.0"})
    for name in ("acme/plugin", "composer/installers"):  # composer/installers is a plugin, as on Packagist
        folder = make_package(packages, name, "2.3.0" if name == "composer/installers" else "1.0.0",
                              type="composer-plugin", require={"composer-plugin-api": "^2.0"},
                              extra={"class": "Acme\\Plugin\\Plugin"}, autoload={"psr-4": {"Acme\\Plugin\\": "src/"}})
        (folder / "src" / "Plugin.php").write_text(PLUGIN_PHP % (tmp_path / "markers" / "plugin"))
    home = tmp_path / "composer-home"
    home.mkdir()
    (home / "config.json").write_text(json.dumps({"repositories": [
        {"type": "path", "url": f"{packages}/*/*"}, {"packagist.org": False}]}))
    (tmp_path / "markers").mkdir()
    return home


def composer_json(**fields) -> str:
    return json.dumps({"name": "mediawiki/needy", "type": "mediawiki-extension", **fields}, indent=4)


def needing(upstream, name: str, require: dict):
    """An upstream extension whose composer.json requires packages."""
    return upstream(name, files={**extension_files(name), "composer.json": composer_json(require=require)})


def configure(deployment: Deployment, composer_home: Path, **keys) -> None:
    deployment.write_config(composer_home=str(composer_home), **keys)


def info(deployment: Deployment, name: str, kind: str = "extensions") -> dict:
    response = deployment.app().test_client().get(f"/info/{kind}/{name}")
    assert response.status_code == 200, response.data
    return response.get_json()


def tarball(deployment: Deployment, name: str, kind: str = "extensions") -> Path:
    return deployment.root / "tarballs" / kind / info(deployment, name, kind)["branches"]["master"]["tarball"]


def tar_files(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        assert not any(member.issym() or member.islnk() for member in members)
        return {m.name: tar.extractfile(m).read() for m in members if m.isfile()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_branch_requiring_packages_ships_vendor_reproducibly_and_info_lists_them(deployment, upstream, composer_home):
    configure(deployment, composer_home)
    needy = upstream("Needy", files={**extension_files("Needy"), "composer.json": composer_json(
        require={"php": ">=8.1", "acme/world": "^2.0"},
        # Nobody can resolve it: composer must never see it, or the build fails.
        **{"require-dev": {"nobody/nothing": "^9.9", "mediawiki/mediawiki-codesniffer": "47.0.0"}})})
    commit = needy.head()
    upstream("Plain", files={**extension_files("Plain"),
                             "composer.json": composer_json(**{"require-dev": {"nobody/nothing": "^1"}})})
    result = deployment.sync()
    assert json.loads(result.stdout)["built"] == 2

    branch = info(deployment, "Needy")["branches"]["master"]
    assert branch["vendor"] == [{"name": "acme/hello", "version": "1.2.3"}, {"name": "acme/world", "version": "2.0.0"}]
    files = tar_files(tarball(deployment, "Needy"))
    assert {"Needy/vendor/acme/hello/src/Hello.php", "Needy/vendor/acme/world/composer.json",
            "Needy/vendor/autoload.php", "Needy/composer.lock", "Needy/includes/Needy.php"} <= files.keys()
    assert b"nobody/nothing" in files["Needy/composer.json"]  # the branch's own file, not the scratch copy
    assert f"ComposerAutoloaderInit{commit}".encode() in files["Needy/vendor/composer/autoload_real.php"]
    classmap = files["Needy/vendor/composer/autoload_classmap.php"]
    assert b"'Hello' => $vendorDir . '/acme/hello/src/Hello.php'" in classmap
    assert info(deployment, "Plain")["branches"]["master"]["vendor"] == []
    assert not any("/vendor/" in name for name in tar_files(tarball(deployment, "Plain")))

    # The same commit built again: the same bytes (composer has written a new lock, autoloader, ...).
    first = {name: sha256(tarball(deployment, name)) for name in ("Needy", "Plain")}
    deployment.sync("--force")
    assert {name: sha256(tarball(deployment, name)) for name in ("Needy", "Plain")} == first
    assert not scratch_root(deployment.settings()).exists()

    # A branch without the step is byte-identical to a build with the step turned off.
    configure(deployment, composer_home, composer="")
    deployment.sync("--force")
    assert sha256(tarball(deployment, "Plain")) == first["Plain"]
    needy_off = info(deployment, "Needy")["branches"]["master"]
    assert needy_off["vendor"] == [] and not any("/vendor/" in name for name in tar_files(tarball(deployment, "Needy")))
    assert needy_off["warnings"] == ["composer.json requires packages, but composer is off or not installed: "
                                     "built without vendor/"]


def test_an_unresolvable_require_fails_that_branch_only_and_its_last_tarball_stays(deployment, upstream, composer_home):
    configure(deployment, composer_home)
    needy = needing(upstream, "Needy", {"acme/hello": "^1"})
    needing(upstream, "Other", {"acme/hello": "^1"})
    deployment.sync()
    good = info(deployment, "Needy")["branches"]["master"]
    needy.commit({"composer.json": composer_json(require={"acme/hello": "^1", "nope/nope": "^1.0"})})
    result = deployment.sync(check=False)
    assert result.returncode == 1 and json.loads(result.stdout)["failed"] == 1
    facts = info(deployment, "Needy")
    assert facts["branches"]["master"] == good
    assert facts["errors"]["master"] == ("composer: Root composer.json requires nope/nope, it could not be found in "
                                         "any version, there may be a typo in the package name.")
    assert (deployment.root / "tarballs/extensions" / good["tarball"]).is_file()
    assert info(deployment, "Other")["errors"] == {} and info(deployment, "Other")["branches"]["master"]["vendor"]
    status = json.loads(deployment.cli("status").stdout)
    assert [(e["name"], e["error"]) for e in status["branch_errors"]] == [("Needy", facts["errors"]["master"])]


@pytest.mark.parametrize("sandbox", sandboxes())
def test_scripts_and_plugins_never_run_and_composer_installers_is_a_plain_package(deployment, upstream, composer_home,
                                                                                 tmp_path, sandbox):
    configure(deployment, composer_home, build_sandbox=sandbox)
    markers = tmp_path / "markers"
    scripts = {event: [f"touch {markers / event}", f"touch vendor/ran-{event}"]
               for event in ("pre-install-cmd", "post-install-cmd", "pre-update-cmd", "post-update-cmd",
                             "pre-autoload-dump", "post-autoload-dump")}
    # The shape of the skin Vector: composer/installers (a plugin) moves it into skins/ when plugins run.
    upstream("Vector", kind="skins", files={
        "skin.json": json.dumps({"name": "Vector", "version": "1.0.0"}),
        "composer.json": composer_json(name="mediawiki/vector-skin", type="mediawiki-skin", scripts=scripts,
                                       require={"composer/installers": ">=1.0.1", "acme/plugin": "^1.0"},
                                       extra={"installer-name": "Vector"},
                                       config={"allow-plugins": {"*": True}, "vendor-dir": "/tmp/elsewhere"}),
    })
    deployment.sync()
    files = tar_files(tarball(deployment, "Vector", "skins"))
    assert info(deployment, "Vector", "skins")["branches"]["master"]["vendor"] == [
        {"name": "acme/plugin", "version": "1.0.0"}, {"name": "composer/installers", "version": "2.3.0"}]
    assert "Vector/vendor/composer/installers/src/Plugin.php" in files
    assert not [name for name in files if "ran-" in name]
    assert list(markers.iterdir()) == []
    assert not Path("/tmp/elsewhere").exists()


def test_symlinks_in_vendor_are_packed_as_files_inside_the_copy_or_left_out(deployment, upstream, composer_home,
                                                                          tmp_path):
    links = make_package(tmp_path / "packages", "acme/links", "1.0.0")
    (links / "inner.php").symlink_to("src/Hello.php")
    (links / "leak").symlink_to("/etc/passwd")  # composer's own mirroring already drops these two
    (links / "folder").symlink_to("/etc")
    # What composer leaves could hold any link (an archive's, a bug's): a composer that adds some.
    linking = tmp_path / "bin" / "composer"
    linking.parent.mkdir()
    linking.write_text(f'#!/bin/sh\n{shutil.which("composer")} "$@" || exit $?\n'
                       "ln -s /etc/passwd vendor/leak && ln -s /etc vendor/folder\n"
                       "ln -s ../composer.json vendor/up\n")
    linking.chmod(0o755)
    configure(deployment, composer_home, composer=str(linking))
    needing(upstream, "Linky", {"acme/links": "^1"})
    deployment.sync()
    files = tar_files(tarball(deployment, "Linky"))
    assert files["Linky/vendor/acme/links/inner.php"] == b"<?php\nclass Hello {}\n"
    assert b'"autoloader-suffix"' in files["Linky/vendor/up"]  # the scratch copy's composer.json, as a file
    assert not any(name.endswith(("/leak", "/folder")) or "passwd" in name for name in files)
    assert info(deployment, "Linky")["branches"]["master"]["warnings"] == [
        "left out symlink vendor/folder: a link to a folder",
        "left out vendor/leak: not a regular file inside the tree"]


def test_an_invalid_composer_json_is_a_manifest_error_and_no_build_step(deployment, upstream, composer_home):
    configure(deployment, composer_home)
    upstream("Broken", files={**extension_files("Broken"), "composer.json": '{"require": {"acme/hello": "^1"'})
    deployment.sync()
    branch = info(deployment, "Broken")["branches"]["master"]
    assert branch["vendor"] == [] and len(branch["manifest_errors"]) == 1
    assert branch["manifest_errors"][0].startswith("composer.json: invalid JSON: ")
    assert not any("/vendor/" in name for name in tar_files(tarball(deployment, "Broken")))


@pytest.mark.parametrize("key, value, error", [
    ("max_files", 10, "composer: more than 10 files with vendor/ (max_files)"),
    ("max_tarball_bytes", 8000, "composer: content with vendor/ larger than 8000 bytes (max_tarball_bytes)"),
])
def test_the_limits_count_vendor(deployment, upstream, composer_home, key, value, error):
    configure(deployment, composer_home, **{key: value})
    needing(upstream, "Needy", {"acme/hello": "^1"})
    upstream("Small")  # the same limits, without the step: built
    result = deployment.sync(check=False)
    assert result.returncode == 1
    assert info(deployment, "Needy")["errors"]["master"] == error
    assert info(deployment, "Small")["errors"] == {}


def test_a_no_op_sync_never_runs_composer(deployment, upstream, composer_home, tmp_path):
    # A composer that counts its runs where it may write: the shared download cache.
    counting = tmp_path / "bin" / "composer"
    counting.parent.mkdir()
    counting.write_text(f'#!/bin/sh\necho run >> "$COMPOSER_CACHE_DIR/runs"\nexec {shutil.which("composer")} "$@"\n')
    counting.chmod(0o755)
    configure(deployment, composer_home, composer=str(counting))
    needy = needing(upstream, "Needy", {"acme/hello": "^1"})
    vendored = needy.head()
    deployment.sync()
    deployment.sync()
    runs = deployment.root / "mirrors/_composer/cache/runs"
    assert runs.read_text() == "run\n"
    assert info(deployment, "Needy")["branches"]["master"]["vendor"] == [{"name": "acme/hello", "version": "1.2.3"}]
    # The branch moves on without composer, then back: the recorded tarball and its list come back, no run.
    needy.commit({"composer.json": None})
    deployment.sync()
    assert info(deployment, "Needy")["branches"]["master"]["vendor"] == []
    git(needy.path, "reset", "--quiet", "--hard", vendored)
    assert json.loads(deployment.sync().stdout)["built"] == 0
    branch = info(deployment, "Needy")["branches"]["master"]
    assert branch["commit"] == vendored and branch["vendor"] == [{"name": "acme/hello", "version": "1.2.3"}]
    assert runs.read_text() == "run\n"


@pytest.mark.parametrize("keys, note", [
    ({"composer": "/no/such/composer"}, "composer '/no/such/composer' is not installed: branches whose composer.json "
                                        "requires packages are built without vendor/"),
    ({"build_sandbox": "none"}, "build_sandbox is \"none\": composer runs without a sandbox, with tardist's own "
                                "permissions"),
])
def test_a_missing_composer_or_sandbox_is_a_warning_in_status(deployment, upstream, composer_home, keys, note):
    configure(deployment, composer_home, **keys)
    upstream("Plain")
    result = deployment.sync()
    assert f"tardist: warning: {note}" in result.stderr
    assert note in json.loads(deployment.cli("status").stdout)["runs"][0]["warnings"]


def hanging_composer_home(tmp_path: Path, port: int) -> Path:
    """COMPOSER_HOME whose only repository is a server that accepts and never answers."""
    home = tmp_path / "hanging-home"
    home.mkdir()
    (home / "config.json").write_text(json.dumps({"repositories": [
        {"type": "composer", "url": f"http://127.0.0.1:{port}", "options": {"http": {"timeout": 600}}},
        {"packagist.org": False}], "config": {"secure-http": False}}))
    return home


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line holds text (read from /proc, nothing killed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_no_network_fails_the_branch_with_composers_own_words(deployment, upstream, tmp_path):
    home, port = tmp_path / "offline-home", closed_port()
    home.mkdir()
    (home / "config.json").write_text(json.dumps({"repositories": [
        {"type": "composer", "url": f"http://127.0.0.1:{port}"}, {"packagist.org": False}],
        "config": {"secure-http": False}}))
    configure(deployment, home)
    needing(upstream, "Needy", {"acme/hello": "^1"})
    assert deployment.sync(check=False).returncode == 1
    error = info(deployment, "Needy")["errors"]["master"]
    assert error.startswith(f'composer: The "http://127.0.0.1:{port}/packages.json" file could not be downloaded: ')
    assert "Connection refused" in error


def test_a_timeout_kills_composer_and_fails_the_branch(deployment, upstream, tmp_path, hanging_remote):
    configure(deployment, hanging_composer_home(tmp_path, hanging_remote.port), composer_timeout=2)
    needing(upstream, "Needy", {"acme/hello": "^1"})
    started = time.monotonic()
    result = deployment.sync(check=False)
    assert result.returncode == 1 and time.monotonic() - started < 30
    assert hanging_remote.connected.is_set()  # composer was really waiting on the repository
    assert info(deployment, "Needy")["errors"]["master"] == "composer: timed out after 2 seconds"
    assert processes_mentioning(str(scratch_root(deployment.settings()))) == []
    assert not scratch_root(deployment.settings()).exists()


def test_a_sigkilled_sync_leaves_no_scratch_folder_after_the_next_start(deployment, upstream, tmp_path,
                                                                       hanging_remote):
    configure(deployment, hanging_composer_home(tmp_path, hanging_remote.port))
    needing(upstream, "Needy", {"acme/hello": "^1"})
    upstream("Other")
    root = scratch_root(deployment.settings())
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARDIST_")}
    process = subprocess.Popen([TARDIST, "sync"], cwd=deployment.root, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**env, "TARDIST_CONFIG": str(deployment.config)})
    assert hanging_remote.connected.wait(60), "composer never asked the repository"
    leftover = next(root.iterdir())
    process.send_signal(signal.SIGKILL)
    process.wait()
    if deployment.settings().build_sandbox == "bwrap":  # the sandbox dies with tardist (--die-with-parent)
        deadline = time.monotonic() + 10
        while processes_mentioning(str(leftover)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_mentioning(str(leftover)) == []
    assert leftover.is_dir()
    deployment.sync("--only", "Other")
    assert not leftover.exists()
