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
import zipfile
from pathlib import Path

import pytest
from helpers import TARDIST, Deployment, extension_files, git

from loopback.servers import closed_port
from tardist.layout import scratch_root
from worker.sandbox import find_bwrap

pytestmark = [pytest.mark.composer, pytest.mark.skipif(shutil.which("composer") is None,
                                                       reason="composer is not installed (./scripts/test installs it)")]

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


@pytest.mark.slow
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


@pytest.mark.slow
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
    # composer's own words differ with and without php-curl ("curl error 7 while downloading ..."):
    # what tardist promises is composer's line, naming the URL it could not reach.
    error = info(deployment, "Needy")["errors"]["master"]
    assert error.startswith("composer: ") and f"http://127.0.0.1:{port}/packages.json" in error, error
    assert "\n" not in error and not error.startswith("composer: refused "), error


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


# --- A branch's composer files may not publish the build host (issue: nothing of the build host in a tarball) ---

MARKER = "SECRET-MARKER-4f1c9e2b"


def every_byte_published(deployment: Deployment) -> bytes:
    """Everything tardist keeps or serves: tarballs (unpacked), published/, the database and its journal."""
    found = []
    for folder, pattern in (("tarballs", "*"), ("published", "*"), ("instance", "tardist.sqlite3*")):
        for path in sorted((deployment.root / folder).rglob(pattern)):
            if path.is_file():
                data = path.read_bytes()
                if path.name.endswith(".tar.gz"):
                    with tarfile.open(path) as tar:
                        data = b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())
                found.append(data)
    return b"\n".join(found)


def host_secrets(tmp_path: Path, deployment: Deployment, composer_home: Path) -> dict[str, Path]:
    """Places on the build host that hold MARKER: a folder, a file, the operator's auth.json, the deployment."""
    secret = tmp_path / "host-secret"
    secret.mkdir()
    (secret / "secret.txt").write_text(f"{MARKER}\n")
    (secret / "Secret.php").write_text(f"<?php\nclass Secret_{MARKER.replace('-', '_')} {{}}\n")
    (composer_home / "auth.json").write_text(json.dumps({"http-basic": {"example.org": {
        "username": "operator", "password": MARKER}}}))
    cache = deployment.root / "mirrors/_composer/cache"  # what every build downloaded: composer sees it
    cache.mkdir(parents=True, exist_ok=True)
    for name in ("secret.txt", "Secret.php"):
        (cache / name).write_bytes((secret / name).read_bytes())
    (deployment.root / "instance").mkdir(exist_ok=True)
    (deployment.root / "instance" / "secret.txt").write_text(f"{MARKER}\n")
    return {"folder": secret, "file": secret / "secret.txt", "home": composer_home,
            "cache": deployment.root / "mirrors/_composer/cache", "instance": deployment.root / "instance"}


def package_repository(name: str, dist: dict, **fields) -> dict:
    return {"type": "package", "package": {"name": name, "version": "1.0.0", "dist": dist, **fields}}


def local_lock(dist: dict) -> str:
    return json.dumps({"content-hash": "0" * 32, "packages": [
        {"name": "evil/lock", "version": "1.0.0", "dist": dist, "type": "library"}], "packages-dev": []})


# Each: (what the branch commits, given the places holding the marker; words the reason must hold)
VECTORS = {
    "package-path-dist-at-composer-home": (lambda at: {"composer.json": composer_json(
        repositories=[package_repository("evil/home", {"type": "path", "url": str(at["home"])})],
        require={"evil/home": "1.0.0"})}, "'path' dist at"),
    "file-dist-host-file": (lambda at: {"composer.json": composer_json(
        repositories=[package_repository("evil/file", {"type": "file", "url": f"file://{at['file']}"})],
        require={"evil/file": "1.0.0"})}, "'file' dist at 'file://"),
    "file-dist-proc-environ": (lambda at: {"composer.json": composer_json(
        repositories=[package_repository("evil/env", {"type": "file", "url": "file:///proc/self/environ"})],
        require={"evil/env": "1.0.0"})}, "'file:///proc/self/environ'"),
    "path-dist-at-composer-cache": (lambda at: {"composer.json": composer_json(
        repositories=[package_repository("evil/cache", {"type": "path", "url": str(at["cache"])})],
        require={"evil/cache": "1.0.0"})}, "'path' dist at"),
    "path-dist-at-instance": (lambda at: {"composer.json": composer_json(
        repositories=[package_repository("evil/instance", {"type": "path", "url": str(at["instance"])})],
        require={"evil/instance": "1.0.0"})}, "'path' dist at"),
    "zip-dist-local-file": (lambda at: {"composer.json": composer_json(
        repositories=[package_repository("evil/zip", {"type": "zip", "url": str(at["file"])})],
        require={"evil/zip": "1.0.0"})}, "'zip' dist at"),
    "path-repository": (lambda at: {"composer.json": composer_json(
        repositories=[{"type": "path", "url": str(at["folder"])}], require={"evil/home": "*"})},
        "a 'path' repository at"),
    "artifact-repository": (lambda at: {"composer.json": composer_json(
        repositories=[{"type": "artifact", "url": str(at["folder"])}], require={"evil/home": "*"})},
        "a 'artifact' repository at"),
    "local-vcs-repository": (lambda at: {"composer.json": composer_json(
        repositories=[{"type": "vcs", "url": str(at["folder"])}], require={"evil/home": "*"})},
        "a 'vcs' repository at"),
    "file-git-repository": (lambda at: {"composer.json": composer_json(
        repositories=[{"type": "git", "url": f"file://{at['folder']}"}], require={"evil/home": "*"})},
        "a 'git' repository at"),
    "composer-repository-on-disk": (lambda at: {"composer.json": composer_json(
        repositories=[{"type": "composer", "url": f"file://{at['folder']}"}], require={"evil/home": "*"})},
        "a composer repository at 'file://"),
    "composer-repository-options": (lambda at: {"composer.json": composer_json(
        repositories=[{"type": "composer", "url": "https://example.org",
                       "options": {"ssl": {"local_cert": str(at["file"])}}}], require={"acme/hello": "^1"})},
        "the composer repository's 'options'"),
    "lock-path-dist-no-repositories": (lambda at: {
        "composer.json": composer_json(require={"evil/lock": "1.0.0"}),
        "composer.lock": local_lock({"type": "path", "url": str(at["folder"]), "reference": "x"})},
        "composer.lock: package evil/lock: a 'path' dist at"),
    "lock-path-dist-outside-operator-folder": (lambda at: {
        "composer.json": composer_json(require={"evil/lock": "1.0.0"}),
        # Inside the operator's packages folder by its words, outside it once resolved.
        "composer.lock": local_lock({"type": "path", "url": f"{at['folder'].parent}/packages/../host-secret"})},
        "composer.lock: package evil/lock: a 'path' dist at"),
    "autoload-classmap-leaves": (lambda at: {"composer.json": composer_json(
        require={"acme/hello": "^1"}, autoload={"classmap": ["../" * 30 + str(at["folder"]).lstrip("/")]})},
        "autoload.classmap: the path '../"),
    "autoload-classmap-absolute": (lambda at: {"composer.json": composer_json(
        require={"acme/hello": "^1"}, autoload={"classmap": [str(at["folder"])]})}, "autoload.classmap: the path '/"),
    "autoload-psr4-leaves": (lambda at: {"composer.json": composer_json(
        require={"acme/hello": "^1"}, autoload={"psr-4": {"Evil\\": ["src/", "../" * 30 + str(at["folder"])[1:]]}})},
        "autoload.psr-4: the path '../"),
    "autoload-files-absolute": (lambda at: {"composer.json": composer_json(
        require={"acme/hello": "^1"}, autoload={"files": [str(at["file"])]})}, "autoload.files: the path '/"),
}


@pytest.mark.slow
@pytest.mark.parametrize("sandbox", sandboxes())
@pytest.mark.parametrize("vector", sorted(VECTORS))
def test_a_branch_asking_for_the_build_host_fails_and_publishes_none_of_it(deployment, upstream, composer_home,
                                                                           tmp_path, monkeypatch, vector, sandbox):
    # Proxy credentials in tardist's environment: what /proc/self/environ would show composer.
    monkeypatch.setenv("http_proxy", f"http://user:{MARKER}@127.0.0.1:9")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    configure(deployment, composer_home, build_sandbox=sandbox, hook_secret=MARKER)
    at = host_secrets(tmp_path, deployment, composer_home)
    needy = needing(upstream, "Needy", {"acme/hello": "^1"})
    deployment.sync()
    good = info(deployment, "Needy")["branches"]["master"]
    files, words = VECTORS[vector]
    needy.commit(files(at))
    result = deployment.sync(check=False)
    assert result.returncode == 1, result.stderr
    facts = info(deployment, "Needy")
    assert facts["branches"]["master"] == good  # the last good tarball stays
    assert facts["errors"]["master"].startswith("composer: refused ") and words in facts["errors"]["master"]
    assert facts["errors"]["master"].endswith(": nothing of the build host may reach a tarball")
    assert MARKER.encode() not in every_byte_published(deployment)
    assert MARKER not in result.stdout + result.stderr + json.dumps(facts)


class Registry:
    """A composer repository over HTTP on loopback, serving packages.json from a folder."""

    def __init__(self, root: Path):
        import functools
        import http.server
        import threading

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass
        self.root = root
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=root))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def offer(self, *versions: dict) -> None:
        packages: dict = {}
        for version in versions:
            packages.setdefault(version["name"], {})[version["version"]] = version
        (self.root / "packages.json").write_text(json.dumps({"packages": packages}))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def zip_package(archive: Path, folder: Path) -> None:
    """A dist archive of a package folder, as a registry serves it."""
    with zipfile.ZipFile(archive, "w") as packed:
        for path in sorted(folder.rglob("*")):
            packed.write(path, path.relative_to(folder).as_posix())


@pytest.fixture
def registry(tmp_path: Path):
    (tmp_path / "registry").mkdir()
    served = Registry(tmp_path / "registry")
    yield served
    served.close()


@pytest.mark.parametrize("sandbox", sandboxes())
@pytest.mark.parametrize("offered, words", [
    ("path", "package evil/offered: a 'path' dist at"),
    ("environ", "package evil/offered: a 'file' dist at 'file:///proc/self/environ'"),
    ("classmap", "package evil/offered: autoload.classmap: the path '../"),
])
def test_a_registry_the_branch_names_cannot_offer_the_build_host(deployment, upstream, composer_home, tmp_path,
                                                                 monkeypatch, registry, offered, words, sandbox):
    monkeypatch.setenv("http_proxy", f"http://user:{MARKER}@127.0.0.1:9")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    config = json.loads((composer_home / "config.json").read_text())
    (composer_home / "config.json").write_text(json.dumps({**config, "config": {"secure-http": False}}))
    configure(deployment, composer_home, build_sandbox=sandbox)
    at = host_secrets(tmp_path, deployment, composer_home)
    # A package on the network whose dist (or autoload) names the build host: only composer's own
    # record of what it installed shows it, so it is checked before anything is packed.
    zip_package(registry.root / "evil.zip", make_package(tmp_path / "zipped", "x/y", "1.0.0"))
    dist = {"path": {"type": "path", "url": str(at["cache"])},
            "environ": {"type": "file", "url": "file:///proc/self/environ"},
            "classmap": {"type": "zip", "url": f"{registry.url}/evil.zip"}}[offered]
    autoload = {"classmap": ["../" * 30 + str(at["cache"])[1:]]} if offered == "classmap" else {}
    registry.offer({"name": "evil/offered", "version": "1.0.0", "dist": dist, "autoload": autoload})
    upstream("Needy", files={**extension_files("Needy"), "composer.json": composer_json(
        repositories=[{"type": "composer", "url": registry.url}], require={"evil/offered": "1.0.0"})})
    result = deployment.sync(check=False)
    assert result.returncode == 1, result.stderr
    facts = info(deployment, "Needy")
    assert "master" not in facts["branches"]
    assert facts["errors"]["master"].startswith("composer: refused ") and words in facts["errors"]["master"], \
        facts["errors"]["master"]
    assert MARKER.encode() not in every_byte_published(deployment)
    assert MARKER not in result.stdout + result.stderr + json.dumps(facts)


def test_registries_the_branch_names_on_the_network_still_work(deployment, upstream, composer_home, tmp_path,
                                                               registry):
    config = json.loads((composer_home / "config.json").read_text())
    (composer_home / "config.json").write_text(json.dumps({**config, "config": {"secure-http": False}}))
    (composer_home / "auth.json").write_text(json.dumps({"http-basic": {"example.org": {
        "username": "operator", "password": MARKER}}}))
    configure(deployment, composer_home)
    zip_package(registry.root / "good.zip", make_package(tmp_path / "zipped", "x/y", "1.0.0"))
    registry.offer({"name": "good/zip", "version": "1.0.0", "dist": {"type": "zip", "url": f"{registry.url}/good.zip"},
                    "autoload": {"classmap": ["src/"]}})
    upstream("Needy", files={**extension_files("Needy"), "composer.json": composer_json(
        repositories=[{"type": "composer", "url": registry.url}, package_repository(
            "good/inline", {"type": "zip", "url": f"{registry.url}/good.zip"})],
        require={"good/zip": "1.0.0", "good/inline": "1.0.0", "acme/hello": "^1"},
        autoload={"psr-4": {"Needy\\": "includes/"}, "classmap": ["includes/"]})})
    deployment.sync()
    assert [p["name"] for p in info(deployment, "Needy")["branches"]["master"]["vendor"]] == [
        "acme/hello", "good/inline", "good/zip"]
    files = tar_files(tarball(deployment, "Needy"))
    assert "Needy/vendor/good/zip/src/Hello.php" in files and "Needy/vendor/acme/hello/src/Hello.php" in files
    assert MARKER.encode() not in every_byte_published(deployment)
