"""Hostile repositories, names and remotes.

Each hostile case is recorded as a readable error (or warning) on the repository
or branch it affects, the run carries on with the others, `tardist sync` exits 1
when something failed, and nothing is written outside mirrors/, tarballs/ and
the database.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from helpers import Deployment, directory_source, extension_files, git

from loopback.gitdaemon import git_daemon
from loopback.servers import closed_port, silent_server

PWNED = Path("/tmp/pwned")  # what the ext:: submodule URL of the brief would create


def strict_json(data: bytes):
    """Parse JSON the way a strict client does: NaN and Infinity are not JSON."""
    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(data, parse_constant=refuse)


def files_under(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple[int, int]]:
    """Every file and symlink under root (not following symlinks): relative path -> (size, mtime)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if here / d not in skip]
        for name in files + [d for d in dirs if (here / d).is_symlink()]:
            stat = (here / name).lstat()
            found[str((here / name).relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return found


def etc_state() -> dict[str, tuple[int, int]]:
    """/etc's own entries, enough to notice a file created or changed there."""
    state = {}
    for entry in os.scandir("/etc"):
        stat = entry.stat(follow_symlinks=False)
        state[entry.name] = (stat.st_size, stat.st_mtime_ns)
    return state


def sync(deployment: Deployment, *args: str, expect: int | None = None) -> subprocess.CompletedProcess:
    """`tardist sync`, checking it wrote nothing outside mirrors/, tarballs/, published/ and instance/."""
    owned = tuple(deployment.root / folder for folder in ("mirrors", "tarballs", "published", "instance"))
    outside = deployment.root.parent
    before, etc_before, pwned_before = files_under(outside, owned), etc_state(), PWNED.exists()
    result = deployment.sync(*args, check=False)
    assert files_under(outside, owned) == before, "sync wrote outside mirrors/, tarballs/, published/ and the database"
    assert etc_state() == etc_before
    assert PWNED.exists() == pwned_before
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == expect if expect is not None else result.returncode in (0, 1), result.stderr
    return result


def get(deployment: Deployment, url: str) -> dict:
    """GET url from the deployment's app; must be 200 and strict JSON."""
    response = deployment.app().test_client().get(url)
    assert response.status_code == 200, response.data
    return strict_json(response.data)


def info(deployment: Deployment, name: str, kind: str = "extensions") -> dict:
    """/info/<kind>/<name>."""
    return get(deployment, f"/info/{kind}/{name}")


def status(deployment: Deployment) -> dict:
    """`tardist status`, which must agree with GET /status."""
    result = deployment.cli("status")
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts == get(deployment, "/status")
    return facts


def branch_errors(deployment: Deployment) -> dict[tuple[str, str], str]:
    """(name, branch) -> error, as `tardist status` lists them."""
    return {(e["name"], e["branch"]): e["error"] for e in status(deployment)["branch_errors"]}


def repository_errors(deployment: Deployment) -> dict[str, str]:
    """name -> error, as `tardist status` lists them."""
    return {e["name"]: e["error"] for e in status(deployment)["repository_errors"]}


def tarball_of(deployment: Deployment, name: str, branch: str = "master", kind: str = "extensions") -> Path:
    """The current tarball of a branch, as /info names it."""
    facts = info(deployment, name, kind)["branches"][branch]
    return deployment.root / "tarballs" / kind / facts["tarball"]


def tar_names(path: Path) -> list[str]:
    """Member names of a tarball; fails on any link member."""
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    assert not any(m.issym() or m.islnk() for m in members)
    return [m.name for m in members]


# --- manifests -----------------------------------------------------------------------------------

DEEP_ARRAYS = "[" * 100_000 + "]" * 100_000
DEEP_INSIDE_REQUIRES = ('{"name": "X", "requires": {"platform": ' + '{"a": ' * 900 + "1" + "}" * 900 + "}}")
WRONG_TYPES = {"name": 1, "version": 1.5, "author": {"a": 1}, "url": ["u"], "description": None,
               "descriptionmsg": 7, "license-name": True, "type": {}, "requires": "MediaWiki >= 1.45"}
WRONG_REQUIRES = {"name": "WrongRequires", "author": ["ok", 3],
                  "requires": {"MediaWiki": 145, "extensions": ["Cite"], "skins": {"Vector": 1},
                               "platform": "php"}}

HOSTILE_MANIFESTS = {
    "BadJson": ({"extension.json": '{"name": "BadJson",'}, "extension.json: invalid JSON"),
    "NotUtf8": ({"extension.json": b'{"name": "Caf\xe9"}'}, "extension.json: not UTF-8"),
    "NotObject": ({"extension.json": "[1, 2]"}, "extension.json: expected a JSON object"),
    "DeepArrays": ({"extension.json": DEEP_ARRAYS}, "extension.json: nested too deeply"),
    "DeepRequires": ({"extension.json": DEEP_INSIDE_REQUIRES}, "extension.json: nested too deeply"),
    "NotFinite": ({"extension.json": '{"name": "NotFinite", "requires": {"platform": {"php": Infinity}}}'},
                  "extension.json: invalid JSON"),
    "HugeNumber": ({"extension.json": '{"name": "HugeNumber", "requires": {"platform": {"php": 1e999}}}'},
                   "extension.json: invalid JSON"),
    "TooLarge": ({"extension.json": json.dumps({"name": "TooLarge", "description": "x" * (1024 * 1024)})},
                 "extension.json: larger than 1048576 bytes (max_manifest_bytes)"),
    "MissingMsg": ({**extension_files("MissingMsg"), "i18n/en.json": '{"other": "x"}'},
                   "descriptionmsg 'missingmsg-desc': not a string in i18n/en.json"),
    "NoI18n": ({"extension.json": extension_files("NoI18n")["extension.json"]},
               "descriptionmsg 'noi18n-desc': no i18n/en.json"),
    "BadI18n": ({**extension_files("BadI18n"), "i18n/en.json": "{"}, "i18n/en.json: invalid JSON"),
    "I18nNotUtf8": ({**extension_files("I18nNotUtf8"), "i18n/en.json": b'{"i18nnotutf8-desc": "\xff"}'},
                    "i18n/en.json: not UTF-8"),
    "I18nList": ({**extension_files("I18nList"), "i18n/en.json": '["i18nlist-desc"]'},
                 "descriptionmsg 'i18nlist-desc': not a string in i18n/en.json"),
    "I18nWrongType": ({**extension_files("I18nWrongType"), "i18n/en.json": '{"i18nwrongtype-desc": ["x"]}'},
                      "descriptionmsg 'i18nwrongtype-desc': not a string in i18n/en.json"),
}


@pytest.mark.slow
def test_hostile_manifests_are_manifest_errors_and_tarballs_are_still_built(deployment, upstream):
    for name, (files, _error) in HOSTILE_MANIFESTS.items():
        upstream(name, files=files)
    upstream("WrongTypes", files={"extension.json": json.dumps(WRONG_TYPES)})
    upstream("WrongRequires", files={"extension.json": json.dumps(WRONG_REQUIRES)})
    result = sync(deployment, expect=0)  # a manifest error does not fail the branch
    summary = deployment.summary(result)
    assert (summary["built"], summary["failed"]) == (len(HOSTILE_MANIFESTS) + 2, 0)
    for name, (_files, error) in HOSTILE_MANIFESTS.items():
        facts = info(deployment, name)
        errors = facts["branches"]["master"]["manifest_errors"]
        assert len(errors) == 1 and errors[0].startswith(error), (name, errors)
        assert all(len(e) < 500 for e in errors)
        assert tarball_of(deployment, name).is_file()
    assert info(deployment, "MissingMsg")["description"] is None
    wrong = info(deployment, "WrongTypes")
    errors = wrong["branches"]["master"]["manifest_errors"]
    for field in WRONG_TYPES:
        assert any(e.startswith(f"extension.json: {field}: ") for e in errors), (field, errors)
    assert {key: wrong[key] for key in ("description", "license", "url", "authors", "type")} == {
        "description": None, "license": None, "url": None, "authors": [], "type": None}
    assert wrong["branches"]["master"]["version"] is None and wrong["branches"]["master"]["requires"] == {}
    requires = info(deployment, "WrongRequires")["branches"]["master"]
    for where in ("author", "requires/MediaWiki", "requires/extensions", "requires/skins/Vector",
                  "requires/platform"):
        assert any(e.startswith(f"extension.json: {where}: ") for e in requires["manifest_errors"]), where
    assert requires["requires"] == {}
    # every answer, one by one and in a batch, is strict JSON
    everything = get(deployment, "/info/extensions")["extensions"]
    assert len(everything) == len(HOSTILE_MANIFESTS) + 2


def test_floods_of_warnings_and_manifest_errors_are_capped(deployment, upstream):
    bad_requires = {f"Ext{i}": i for i in range(300)} | {"A\ud800": 1}  # and a lone surrogate, escaped in JSON
    repo = upstream("Flood", files={"extension.json": json.dumps({"name": "Flood", "requires": {
        "extensions": bad_requires}})})
    for i in range(150):
        repo.symlink(f"links/l{i:03d}", "nowhere")
    repo.commit()
    sync(deployment, expect=0)
    facts = info(deployment, "Flood")["branches"]["master"]
    assert len(facts["warnings"]) == 101 and facts["warnings"][-1] == "... and 50 more"
    assert len(facts["manifest_errors"]) == 101 and facts["manifest_errors"][-1] == "... and 201 more"
    assert "extension.json: requires/extensions/A\\ud800: 1 is not of type 'string'" in facts["manifest_errors"]


# --- trees ---------------------------------------------------------------------------------------

def test_symlinks_out_of_the_tree_looping_or_dangling_are_left_out_with_warnings(deployment, upstream):
    repo = upstream("Links", files={"README.md": "readme\n", "a/f.txt": "a\n", "b/g.txt": "b\n",
                                    "c/h.txt": "c\n", "sub/file.txt": "sub\n"})
    links = {
        "abs": "/etc/passwd",                # absolute
        "up": "..",                          # the folder above the top
        "sub/escape": "../../../etc/hostname",
        "dangling": "no/such/file",
        "loop1": "loop2", "loop2": "loop1",  # a loop of file links
        "self": "self",
        "sub/parent": "..",                  # a folder link to its own parent (the top)
        "sub/here": ".",                     # a folder link to the folder it is in
        "a/to_b": "../b", "b/to_a": "../a",  # folders linking to each other
        "entry": "c", "c/to_d": "../d", "d": "c",  # a loop entered from outside it
        "inside": "README.md",               # fine: becomes a regular file
        "alias": "a",                        # fine: a folder link inside the tree
    }
    for link, target in links.items():
        repo.symlink(link, target)
    repo.commit()
    sync(deployment, expect=0)
    facts = info(deployment, "Links")["branches"]["master"]
    names = tar_names(tarball_of(deployment, "Links"))
    assert "Links/inside" in names and "Links/alias/f.txt" in names and "Links/a/to_b/g.txt" in names
    for dropped in ("abs", "up", "sub/escape", "dangling", "loop1", "loop2", "self", "sub/parent", "sub/here"):
        assert f"Links/{dropped}" not in names
        assert any(w.startswith(f"left out symlink {dropped} -> ") for w in facts["warnings"]), dropped
    assert all(len(name) < 200 for name in names), "a folder loop was expanded"
    warnings = "\n".join(facts["warnings"])
    assert "abs -> /etc/passwd: it points outside the tree" in warnings
    assert "up -> ..: it points outside the tree" in warnings
    assert "loop1 -> loop2: it is a symlink loop" in warnings
    assert "sub/parent -> ..: it contains itself" in warnings
    assert "dangling -> no/such/file: it points to nothing" in warnings


@pytest.mark.slow
def test_folder_links_that_multiply_stop_at_max_files(deployment, upstream):
    repo = upstream("Bomb", files={"l30/leaf": "leaf\n"})
    for level in range(30):  # 2**30 paths if every link were followed
        repo.symlink(f"l{level}/x", f"../l{level + 1}")
        repo.symlink(f"l{level}/y", f"../l{level + 1}")
    repo.commit()
    upstream("Healthy")
    result = sync(deployment, expect=1)
    assert deployment.summary(result)["built"] == 1
    assert branch_errors(deployment)[("Bomb", "master")] == "symlinks lead to more than 100000 paths (max_files)"


def test_a_symlink_whose_target_is_megabytes_is_left_out_unread(deployment, upstream):
    repo = upstream("LongLink", files={"ok.txt": "ok\n"})
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo.path, input="a/" * 2_000_000,
                          capture_output=True, text=True, check=True).stdout.strip()
    git(repo.path, "update-index", "--add", "--cacheinfo", f"120000,{blob},huge")
    git(repo.path, "commit", "--quiet", "-m", "a 4 MB symlink")
    sync(deployment, expect=0)
    assert tar_names(tarball_of(deployment, "LongLink")) == [
        "LongLink", "LongLink/gitinfo.json", "LongLink/ok.txt", "LongLink/version"]
    warnings = info(deployment, "LongLink")["branches"]["master"]["warnings"]
    assert warnings == ["left out symlink huge -> (too long to show): its target is longer than 4096 bytes"]


def test_tree_entries_named_dot_dot_are_left_out(deployment, upstream):
    repo = upstream("DotDot", files={"ok.txt": "ok\n"})
    blob = git(repo.path, "hash-object", "-w", "ok.txt")
    inner = subprocess.run(["git", "mktree"], cwd=repo.path, input=f"100644 blob {blob}\tpwned\n",
                           capture_output=True, text=True, check=True).stdout.strip()
    up = subprocess.run(["git", "mktree"], cwd=repo.path, input=f"040000 tree {inner}\t..\n",
                        capture_output=True, text=True, check=True).stdout.strip()
    top = subprocess.run(["git", "mktree"], cwd=repo.path, capture_output=True, text=True, check=True,
                         input=f"040000 tree {up}\t..\n040000 tree {up}\tsub\n100644 blob {blob}\tok.txt\n"
                         f"040000 tree {inner}\t.\n").stdout.strip()
    commit = git(repo.path, "commit-tree", "-m", "tree entries named .. and .", "-p", "HEAD", top)
    git(repo.path, "update-ref", "refs/heads/master", commit)
    sync(deployment, expect=0)
    names = tar_names(tarball_of(deployment, "DotDot"))
    assert "DotDot/ok.txt" in names
    assert not any(".." in name.split("/") or "." in name.split("/") for name in names), names
    warnings = info(deployment, "DotDot")["branches"]["master"]["warnings"]
    assert "left out ../../pwned: not a safe path" in warnings
    assert "left out sub/../pwned: not a safe path" in warnings


@pytest.mark.slow
def test_file_names_that_are_not_utf8_are_packed_and_reported_readably(deployment, upstream):
    repo = upstream("Bytes", files={"README.md": "hi\n"})
    odd = os.fsdecode(b"caf\xe9.txt")
    (repo.path / odd).write_text("latin-1 name\n")
    (repo.path / "new\nline.txt").write_text("newline in the name\n")
    repo.symlink(os.fsdecode(b"dangling-\xff"), "nowhere")
    repo.commit()
    lib = upstream("Lib", kind="lib", files={"lib.txt": "lib\n"})
    repo.pin_submodule(os.fsdecode(b"vendor-\xfe"), "https://example.org/lib.git", lib.head())
    upstream("Healthy")
    result = sync(deployment, expect=1)
    assert deployment.summary(result)["built"] == 1, "the other repositories are still recorded"
    error = branch_errors(deployment)[("Bytes", "master")]
    assert error == ("submodule vendor-\\xfe: transport 'https' of 'https://example.org/lib.git' "
                     "is not allowed (submodule_protocols)")
    assert info(deployment, "Bytes")["errors"]["master"] == error
    # without the submodule, the branch builds, odd names and all
    git(repo.path, "rm", "--quiet", "--cached", os.fsdecode(b"vendor-\xfe"))
    repo.commit({".gitmodules": None})
    sync(deployment, expect=0)
    facts = info(deployment, "Bytes")["branches"]["master"]
    assert facts["warnings"] == ["left out symlink dangling-\\xff -> nowhere: it points to nothing"]
    with tarfile.open(tarball_of(deployment, "Bytes"), encoding="utf-8", errors="surrogateescape") as tar:
        names = tar.getnames()
    assert f"Bytes/{odd}" in names and "Bytes/new\nline.txt" in names


def test_size_and_file_count_limits_fail_only_that_branch(deployment, upstream, tmp_path):
    deployment.write_config(directory_source("extensions", tmp_path / "upstream/extensions"),
                            max_tarball_bytes=20_000, max_files=30)
    upstream("Big", files={"blob.bin": os.urandom(30_000)})
    many = upstream("Many", files={f"f{i:02d}.txt": f"{i}\n" for i in range(40)})
    git(many.path, "branch", "REL1_45", "HEAD")
    many.commit({f"f{i:02d}.txt": None for i in range(20)})  # master is small enough again
    upstream("Small")
    result = sync(deployment, expect=1)
    assert deployment.summary(result)["built"] == 2
    errors = branch_errors(deployment)
    assert errors == {("Big", "master"): "content larger than 20000 bytes (max_tarball_bytes)",
                      ("Many", "REL1_45"): "more than 30 files (max_files)"}
    many_facts = info(deployment, "Many")
    assert list(many_facts["branches"]) == ["master"] and many_facts["errors"] == {
        "REL1_45": "more than 30 files (max_files)"}
    assert not list((deployment.root / "tarballs/extensions").glob("Big-*"))


# --- submodules ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_submodule_urls_are_checked_before_git_sees_them(deployment, upstream, tmp_path):
    deployment.write_config(directory_source("extensions", tmp_path / "upstream/extensions"),
                            submodule_protocols=["git", "https"])
    lib = upstream("Lib", kind="lib", files={"lib.txt": "lib\n"})
    marker = tmp_path / "pwned-by-ext"
    cases = {
        "FileUrl": (f"file://{lib.path}", f"transport 'file' of 'file://{lib.path}' is not allowed"),
        "LocalPath": (str(lib.path), f"transport 'file' of '{lib.path}' is not allowed"),
        "Ext": (f"ext::sh -c touch% {marker}", f"transport 'ext' of 'ext::sh -c touch% {marker}' is not allowed"),
        "ExtTmp": ("ext::sh -c touch% /tmp/pwned", "transport 'ext' of 'ext::sh -c touch% /tmp/pwned'"),
        "Option": (f"--upload-pack=touch {marker}", f"refusing URL '--upload-pack=touch {marker}'"),
        "ControlChar": ("https://example.org/x\n--upload-pack=touch", "refusing URL"),
    }
    for name, (url, _error) in cases.items():
        upstream(name).pin_submodule("lib", url, lib.head())
    upstream("Healthy")
    result = sync(deployment, expect=1)
    assert deployment.summary(result) | {"seconds": 0} == {
        "repositories": len(cases) + 1, "built": 1, "unchanged": 0, "failed": len(cases), "waiting": 0,
        "unlisted_sources": 0, "interrupted": False, "seconds": 0}
    errors = branch_errors(deployment)
    for name, (_url, error) in cases.items():
        assert errors[(name, "master")].startswith(f"submodule lib: {error}"), errors[(name, "master")]
        assert info(deployment, name)["errors"]["master"] == errors[(name, "master")]
    assert not marker.exists()
    assert not (deployment.root / "mirrors/_modules").exists(), "no refused URL reached git"


@pytest.mark.slow
def test_relative_submodule_urls_resolve_against_the_parents_remote(deployment, upstream, tmp_path):
    served = tmp_path / "upstream"
    lib = upstream("Lib", kind="lib", files={"lib.txt": "lib v1\n"})
    pinned = lib.head()
    lib.commit({"lib.txt": "lib v2, not pinned\n"})
    parent = upstream("Parent", kind="lib")
    parent.pin_submodule("vendor/lib", "../Lib", pinned)
    option_path = upstream("OptionPath", kind="lib")
    option_path.pin_submodule("--upload-pack=touch x", "../Lib", pinned)  # a hostile path, not a URL
    missing = upstream("Missing", kind="lib")
    missing.pin_submodule("lib", "../Lib", "2" * 40)
    with git_daemon(served) as base:
        deployment.write_config(
            '\n[[source]]\nkind = "extensions"\ntype = "list"\n'
            f'repos = {{ Parent = "{base}/lib/Parent", OptionPath = "{base}/lib/OptionPath", '
            f'Missing = "{base}/lib/Missing" }}\n', submodule_protocols=["git"])
        result = sync(deployment, expect=1)
    assert deployment.summary(result)["built"] == 2
    files = tar_names(tarball_of(deployment, "Parent"))
    assert "Parent/vendor/lib/lib.txt" in files
    with tarfile.open(tarball_of(deployment, "Parent")) as tar:
        assert tar.extractfile("Parent/vendor/lib/lib.txt").read() == b"lib v1\n"
    assert "OptionPath/--upload-pack=touch x/lib.txt" in tar_names(tarball_of(deployment, "OptionPath"))
    assert not (deployment.root / "x").exists()
    error = branch_errors(deployment)[("Missing", "master")]
    assert error == f"submodule lib: commit {'2' * 40} is not in {base}/lib/Lib"


# --- names ---------------------------------------------------------------------------------------

BAD_NAMES = ["a..b", "with space", "-dash", "Ünïcode", ".hidden", "trailing.", "newline\n", "x" * 101]


def test_directory_source_skips_names_that_are_not_plain_with_a_warning(deployment, upstream, tmp_path):
    for name in BAD_NAMES:
        git(tmp_path, "init", "--quiet", "--bare", str(tmp_path / "upstream/extensions" / f"{name}.git"))
    upstream("Good")
    result = sync(deployment, expect=0)
    assert deployment.summary(result)["repositories"] == 1
    recorded = status(deployment)["runs"][0]["warnings"]
    for name in BAD_NAMES:
        warning = f"source[0]: skipped {name!r}: not a plain repository name"
        assert f"tardist: warning: {warning}" in result.stderr and warning in recorded
    assert get(deployment, "/list/extensions") == {"extensions": ["Good"]}
    assert sorted(p.name for p in (deployment.root / "mirrors/extensions").iterdir()) == ["Good.git"]


@pytest.mark.parametrize("name", [*BAD_NAMES, "a/b", "../up", "x\ny"])
def test_list_source_refuses_names_that_are_not_plain_at_config_load(deployment, upstream, name):
    upstream("Good")
    deployment.write_config('\n[[source]]\nkind = "extensions"\ntype = "list"\n'
                            f'repos = {{ {json.dumps(name)} = "/srv/git/x", Good = "/srv/git/good" }}\n')
    result = sync(deployment, expect=2)
    assert (f"{deployment.config}: source[0]: key 'repos': {name!r} is not a plain repository name"
            in result.stderr)
    assert result.stdout == "" and not (deployment.root / "mirrors").exists()


@pytest.mark.parametrize("branch", ["wmf/1.45", "../x", "-x", "bar-master", "a b", "x.lock", "", ".hidden", "é", "a..b",
                                    "REL1_45\n"])
def test_branch_names_that_cannot_be_file_names_are_refused_at_config_load(deployment, branch):
    deployment.write_config(branches=["master", branch])
    result = sync(deployment, expect=2)
    assert f"key 'branches': {branch!r} is not a plain branch name" in result.stderr
    assert result.stdout == ""


# --- remotes -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_unreachable_and_silent_remotes_fail_alone(deployment, upstream, tmp_path):
    upstream("Cite")
    with silent_server() as port:
        deployment.write_config(
            '\n[[source]]\nkind = "extensions"\ntype = "list"\n'
            f'repos = {{ Refused = "git://127.0.0.1:{closed_port()}/Refused", '
            f'Silent = "git://127.0.0.1:{port}/Silent", Cite = "{tmp_path}/upstream/extensions/Cite" }}\n',
            git_timeout=2)
        result = sync(deployment, expect=1)
    summary = deployment.summary(result)
    assert (summary["built"], summary["failed"]) == (1, 2) and summary["seconds"] < 15
    errors = repository_errors(deployment)
    assert set(errors) == {"Refused", "Silent"}
    assert errors["Refused"].startswith("git ls-remote failed: ") and "unable to connect" in errors["Refused"]
    assert errors["Silent"] == "git ls-remote failed: timed out after 2 seconds"
    assert info(deployment, "Silent")["error"] == errors["Silent"]
    assert info(deployment, "Cite")["branches"]["master"]


@pytest.fixture
def served(tmp_path: Path, deployment: Deployment, upstream):
    """A git daemon serving tmp_path/upstream, and a list source of Cite and Echo through it."""
    repos = {name: upstream(name) for name in ("Cite", "Echo")}
    with git_daemon(tmp_path / "upstream") as base:
        deployment.write_config('\n[[source]]\nkind = "extensions"\ntype = "list"\n'
                                f'repos = {{ Cite = "{base}/extensions/Cite", Echo = "{base}/extensions/Echo" }}\n')
        yield repos


@pytest.mark.slow
def test_repository_that_disappears_keeps_its_old_tarballs(deployment, served, tmp_path):
    sync(deployment, expect=0)
    old = info(deployment, "Cite")["branches"]["master"]
    shutil.rmtree(served["Cite"].path)
    result = sync(deployment, expect=1)
    assert "FAILED extensions/Cite: git ls-remote failed" in result.stderr
    facts = info(deployment, "Cite")
    assert facts["error"].startswith("git ls-remote failed")
    assert facts["branches"]["master"] == old, "the last good tarball is still offered"
    assert (deployment.root / "tarballs/extensions" / old["tarball"]).is_file()
    response = deployment.app().test_client().get("/download/extensions/Cite/master")
    assert response.status_code == 302 and response.location.endswith(old["tarball"])
    assert list(repository_errors(deployment)) == ["Cite"]


@pytest.mark.slow
def test_branch_force_pushed_to_an_unrelated_history_is_rebuilt(deployment, served):
    repo = served["Echo"]
    git(repo.path, "branch", "REL1_45")
    sync(deployment, expect=0)
    old = info(deployment, "Echo")["branches"]["REL1_45"]
    git(repo.path, "checkout", "--quiet", "--orphan", "unrelated")
    git(repo.path, "rm", "-r", "--quiet", "-f", ".")
    new = repo.commit({"extension.json": json.dumps({"name": "Echo", "version": "9.0"}), "only.txt": "new\n"})
    git(repo.path, "branch", "-f", "REL1_45", new)
    sync(deployment, expect=0)
    facts = info(deployment, "Echo")["branches"]["REL1_45"]
    assert facts["commit"] == new and facts["version"] == "9.0"
    assert sorted(tar_names(tarball_of(deployment, "Echo", "REL1_45"))) == [
        "Echo", "Echo/extension.json", "Echo/gitinfo.json", "Echo/only.txt", "Echo/version"]
    assert (tarball_of(deployment, "Echo", "REL1_45").parent / old["tarball"]).is_file()


def test_deleted_branch_disappears_from_info(deployment, served):
    repo = served["Cite"]
    git(repo.path, "branch", "REL1_45")
    sync(deployment, expect=0)
    assert list(info(deployment, "Cite")["branches"]) == ["master", "REL1_45"]
    git(repo.path, "branch", "-D", "REL1_45")
    sync(deployment, expect=0)
    facts = info(deployment, "Cite")
    assert list(facts["branches"]) == ["master"] and facts["errors"] == {}
    response = deployment.app().test_client().get("/download/extensions/Cite/REL1_45")
    assert response.status_code == 404


def test_a_repositorys_own_version_and_gitinfo_never_break_the_tarball(deployment, upstream):
    files = {**extension_files("Clash"), "version/x.txt": "a folder where tardist writes a file\n",
             "gitinfo.json": '{"mine": true}\n'}
    repo = upstream("Clash", files=files)
    sync(deployment, expect=0)
    warnings = info(deployment, "Clash")["branches"]["master"]["warnings"]
    assert "left out tardist's version file: the repository has a folder version/" in warnings
    assert "replaced the repository's gitinfo.json with tardist's" in warnings
    path = tarball_of(deployment, "Clash")
    with tarfile.open(path) as tar:
        assert tar.extractfile("Clash/version/x.txt").read() == b"a folder where tardist writes a file\n"
        assert json.loads(tar.extractfile("Clash/gitinfo.json").read())["headSHA1"] == repo.head()
    unpacked = deployment.root.parent / "unpacked-clash"
    unpacked.mkdir()
    subprocess.run(["tar", "-xzf", str(path), "-C", str(unpacked)], check=True, capture_output=True)
    assert (unpacked / "Clash/version/x.txt").is_file()


def test_a_path_that_is_both_a_file_and_a_folder_is_packed_once(deployment, upstream):
    repo = upstream("Twice")
    blob = git(repo.path, "hash-object", "-w", "--stdin", "--path", "x")
    inner = subprocess.run(["git", "mktree"], cwd=repo.path, input=f"100644 blob {blob}\tinside.txt\n",
                           capture_output=True, text=True, check=True).stdout.strip()
    top = git(repo.path, "write-tree")
    listing = git(repo.path, "ls-tree", top)
    crafted = subprocess.run(["git", "mktree"], cwd=repo.path, capture_output=True, text=True, check=True,
                             input=f"{listing}\n100644 blob {blob}\tboth\n040000 tree {inner}\tboth\n").stdout.strip()
    commit = git(repo.path, "commit-tree", crafted, "-p", "HEAD", "-m", "both a file and a folder")
    git(repo.path, "update-ref", "refs/heads/master", commit)
    sync(deployment, expect=0)
    warnings = info(deployment, "Twice")["branches"]["master"]["warnings"]
    assert warnings == ["left out both/inside.txt: both is a file"]
    assert "Twice/both" in tar_names(tarball_of(deployment, "Twice"))
