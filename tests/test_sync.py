"""`tardist sync` end to end on real git repositories: what operators and wikis rely on."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from helpers import TARDIST, Deployment, git

from worker.lock import sync_lock
from worker.tree import MAX_SUBMODULE_DEPTH


def tar_members(path: Path) -> dict[str, tarfile.TarInfo]:
    """The tarball's members by name."""
    with tarfile.open(path) as tar:
        return {member.name: member for member in tar.getmembers()}


def tar_files(path: Path) -> dict[str, bytes]:
    """The regular files of a tarball and their contents."""
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def info(deployment: Deployment, name: str, kind: str = "extensions") -> dict:
    """GET /info/<kind>/<name> through the app."""
    response = deployment.app().test_client().get(f"/info/{kind}/{name}")
    assert response.status_code == 200, response.data
    return response.get_json()


def tarball(deployment: Deployment, name: str, branch: str, commit: str, kind: str = "extensions") -> Path:
    return deployment.root / "tarballs" / kind / f"{name}-{branch}-{commit[:7]}.tar.gz"


def test_sync_from_scratch_builds_every_snapshot_branch(deployment, upstream):
    repo = upstream("Cite")
    git(repo.path, "branch", "REL1_45")
    result = deployment.sync()
    assert deployment.summary(result) | {"seconds": 0} == {
        "repositories": 1, "built": 2, "unchanged": 0, "failed": 0, "waiting": 0, "unlisted_sources": 0,
        "interrupted": False, "seconds": 0}
    head = repo.head()
    for branch in ("master", "REL1_45"):
        path = tarball(deployment, "Cite", branch, head)
        assert path.is_file()
    facts = info(deployment, "Cite")
    assert list(facts["branches"]) == ["master", "REL1_45"]
    master = facts["branches"]["master"]
    assert master["commit"] == head and master["sha7"] == head[:7]
    assert master["tarball"] == f"Cite-master-{head[:7]}.tar.gz"
    assert master["url"] == f"/dist/extensions/Cite-master-{head[:7]}.tar.gz"
    content = tarball(deployment, "Cite", "master", head).read_bytes()
    assert master["size"] == len(content) and master["sha256"] == hashlib.sha256(content).hexdigest()
    assert master["committed_at"] == "2026-01-01T10:00:00Z"
    assert facts["description"] == "The Cite extension"
    assert facts["authors"] == ["Ada", "Grace"] and facts["license"] == "GPL-2.0-or-later"
    assert master["version"] == "1.0.0" and master["requires"] == {"MediaWiki": ">= 1.45.0"}
    assert master["manifest_errors"] == [] and facts["errors"] == {}


def test_tarball_matches_git_ls_tree_plus_gitinfo_and_version(deployment, upstream):
    repo = upstream("Echo")
    repo.commit({"bin/run.sh": "#!/bin/sh\necho hi\n", "deep/a/b/c.txt": "c"})
    (repo.path / "bin/run.sh").chmod(0o755)
    head = repo.commit({"modules/ext.echo.js": "// js\n"})
    deployment.sync()
    path = tarball(deployment, "Echo", "master", head)
    files = tar_files(path)
    listed = git(repo.path, "ls-tree", "-r", "--name-only", "master").splitlines()
    assert sorted(files) == sorted([f"Echo/{p}" for p in listed] + ["Echo/gitinfo.json", "Echo/version"])
    for name in listed:
        assert files[f"Echo/{name}"] == (repo.path / name).read_bytes()
    members = tar_members(path)
    assert members["Echo/bin/run.sh"].mode == 0o755 and members["Echo/README.md"].mode == 0o644
    assert members["Echo"].isdir() and members["Echo/deep/a/b"].isdir()
    assert all(m.uid == 0 and m.gid == 0 and m.uname == "" for m in members.values())
    committed = int(git(repo.path, "show", "-s", "--format=%ct", head))
    assert {m.mtime for m in members.values()} == {committed}
    assert not any(".git/" in name or name.endswith("/.git") for name in members)
    gitinfo = json.loads(files["Echo/gitinfo.json"])
    assert gitinfo == {"head": "refs/heads/master", "headSHA1": head, "headCommitDate": str(committed),
                       "branch": "master", "remoteURL": ""}  # a directory source: no server path is shown
    assert files["Echo/version"].decode().splitlines() == ["Echo: master", "2026-01-03T10:00:00Z", head[:7]]
    assert path.read_bytes()[4:8] == b"\0\0\0\0"  # no gzip timestamp


def test_second_sync_rebuilds_nothing(deployment, upstream):
    upstream("Cite")
    deployment.sync()
    before = {p: p.stat().st_mtime_ns for p in (deployment.root / "tarballs").rglob("*.tar.gz")}
    summary = deployment.summary(deployment.sync())
    assert (summary["built"], summary["unchanged"], summary["failed"]) == (0, 1, 0)
    assert {p: p.stat().st_mtime_ns for p in (deployment.root / "tarballs").rglob("*.tar.gz")} == before


@pytest.mark.slow
def test_new_commit_rebuilds_only_that_branch_and_keeps_the_old_tarball(deployment, upstream):
    repo = upstream("Cite")
    git(repo.path, "branch", "REL1_45")
    old = repo.head()
    deployment.sync()
    rel_tarball = tarball(deployment, "Cite", "REL1_45", old)
    rel_mtime = rel_tarball.stat().st_mtime_ns
    new = repo.commit({"README.md": "changed\n"})
    summary = deployment.summary(deployment.sync())
    assert (summary["built"], summary["unchanged"]) == (1, 1)
    assert tarball(deployment, "Cite", "master", new).is_file()
    assert tarball(deployment, "Cite", "master", old).is_file(), "old tarballs stay for people who linked them"
    assert rel_tarball.stat().st_mtime_ns == rel_mtime
    facts = info(deployment, "Cite")
    assert facts["branches"]["master"]["commit"] == new
    assert facts["branches"]["REL1_45"]["commit"] == old


@pytest.mark.slow
def test_force_rebuild_is_byte_identical(deployment, upstream):
    repo = upstream("Cite")
    deployment.sync()
    path = tarball(deployment, "Cite", "master", repo.head())
    first = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name("copy").write_bytes(path.read_bytes())
    summary = deployment.summary(deployment.sync("--force"))
    assert summary["built"] == 1
    assert hashlib.sha256(path.read_bytes()).hexdigest() == first
    assert info(deployment, "Cite")["branches"]["master"]["sha256"] == first


def test_branch_that_is_also_an_annotated_tag_resolves_to_the_branch(deployment, upstream):
    repo = upstream("Cite")
    tagged = repo.head()
    git(repo.path, "tag", "-a", "REL1_45", "-m", "release tag with the branch's name")
    repo.checkout("REL1_45-work", create=True)
    branch_head = repo.commit({"README.md": "release branch\n"})
    git(repo.path, "update-ref", "refs/heads/REL1_45", branch_head)
    assert git(repo.path, "rev-parse", "refs/heads/REL1_45") == branch_head != tagged
    repo.checkout("master")
    deployment.sync()
    assert info(deployment, "Cite")["branches"]["REL1_45"]["commit"] == branch_head
    assert tarball(deployment, "Cite", "REL1_45", branch_head).is_file()


def test_missing_snapshot_branch_is_skipped_not_failed(deployment, upstream):
    upstream("Cite")
    result = deployment.sync()
    assert deployment.summary(result)["failed"] == 0
    facts = info(deployment, "Cite")
    assert list(facts["branches"]) == ["master"] and facts["errors"] == {}


def test_submodules_are_included_recursively_at_pinned_commits(deployment, upstream, tmp_path):
    inner = upstream("Inner", kind="lib", files={"inner.txt": "inner v1\n"})
    pinned_inner = inner.head()
    lib = upstream("Lib", kind="lib", files={"lib.js": "lib v1\n"})
    git(lib.path, "submodule", "add", "--quiet", str(inner.path), "vendor/inner")
    lib.commit(message="add inner")
    inner.commit({"inner.txt": "inner v2, not pinned\n"})
    repo = upstream("VisualEditor")
    git(repo.path, "submodule", "add", "--quiet", str(lib.path), "lib/ve")
    head = repo.commit(message="add lib")
    lib.commit({"lib.js": "lib v2, not pinned\n"})
    deployment.sync()
    files = tar_files(tarball(deployment, "VisualEditor", "master", head))
    assert files["VisualEditor/lib/ve/lib.js"] == b"lib v1\n"
    assert files["VisualEditor/lib/ve/vendor/inner/inner.txt"] == b"inner v1\n"
    assert "VisualEditor/.gitmodules" in files
    assert not any(name.endswith("/.git") for name in files)
    assert pinned_inner != inner.head()


def test_missing_submodule_commit_fails_that_branch_only(deployment, upstream):
    lib = upstream("Lib", kind="lib", files={"lib.js": "lib\n"})
    repo = upstream("Broken")
    git(repo.path, "branch", "REL1_45")
    head = repo.pin_submodule("lib", str(lib.path), "1" * 40)  # a commit that does not exist
    upstream("Healthy")
    result = deployment.sync(check=False)
    assert result.returncode == 1
    assert deployment.summary(result)["failed"] == 1
    assert "Broken" in result.stderr and "1111111" in result.stderr
    facts = info(deployment, "Broken")
    assert "master" not in facts["branches"] and "REL1_45" in facts["branches"]
    assert f"commit {'1' * 40} is not in" in facts["errors"]["master"]
    assert not tarball(deployment, "Broken", "master", head).exists()
    assert info(deployment, "Healthy")["branches"]["master"]
    status = json.loads(deployment.cli("status").stdout)
    assert [(e["name"], e["branch"]) for e in status["branch_errors"]] == [("Broken", "master")]


def test_symlinks_inside_are_files_outside_and_dangling_are_left_out(deployment, upstream):
    repo = upstream("Links")
    repo.symlink("inside", "README.md")
    repo.symlink("docs/up", "../includes/Links.php")
    repo.symlink("alias", "includes")
    repo.symlink("passwd", "/etc/passwd")
    repo.symlink("escape", "../../../../etc/hostname")
    repo.symlink("dangling", "no/such/file")
    repo.symlink("loop1", "loop2")
    repo.symlink("loop2", "loop1")
    head = repo.commit()
    deployment.sync()
    path = tarball(deployment, "Links", "master", head)
    members = tar_members(path)
    files = tar_files(path)
    assert not any(m.issym() or m.islnk() for m in members.values())
    assert files["Links/inside"] == b"# Links\n"
    assert files["Links/docs/up"] == files["Links/includes/Links.php"]
    assert files["Links/alias/Links.php"] == files["Links/includes/Links.php"]
    for dropped in ("passwd", "escape", "dangling", "loop1", "loop2"):
        assert f"Links/{dropped}" not in members
    warnings = " ".join(info(deployment, "Links")["branches"]["master"]["warnings"])
    assert "passwd -> /etc/passwd" in warnings and "outside the tree" in warnings
    assert "dangling -> no/such/file: it points to nothing" in warnings
    assert "symlink loop" in warnings


def test_invalid_and_absent_manifests_are_recorded_but_tarballs_built(deployment, upstream):
    upstream("NoManifest", files={"README.md": "hi\n"})
    upstream("BadJson", files={"extension.json": "{not json"})
    upstream("WrongTypes", files={"extension.json": json.dumps({"name": "WrongTypes", "author": 5,
                                                                "version": "2.0", "requires": []})})
    result = deployment.sync()
    assert deployment.summary(result)["built"] == 3
    none = info(deployment, "NoManifest")
    assert none["branches"]["master"]["manifest_errors"] == ["no extension.json or skin.json"]
    bad = info(deployment, "BadJson")["branches"]["master"]
    assert bad["manifest_errors"][0].startswith("extension.json: invalid JSON")
    wrong = info(deployment, "WrongTypes")
    errors = wrong["branches"]["master"]["manifest_errors"]
    assert any(e.startswith("extension.json: author:") for e in errors)
    assert any(e.startswith("extension.json: requires:") for e in errors)
    assert wrong["branches"]["master"]["version"] == "2.0" and wrong["authors"] == []


def test_skin_manifest_and_description_fallback(deployment, upstream):
    upstream("Vector", kind="skins", files={"skin.json": json.dumps(
        {"name": "Vector", "description": "Plain description", "type": "skin", "author": "Someone"})})
    deployment.sync()
    facts = info(deployment, "Vector", kind="skins")
    assert facts["description"] == "Plain description" and facts["authors"] == ["Someone"]
    assert facts["type"] == "skin"


def test_unreachable_repository_fails_alone(deployment, upstream, tmp_path):
    upstream("Cite")
    deployment.write_config(
        '\n[[source]]\nkind = "extensions"\ntype = "list"\n'
        f'repos = {{ Gone = "{tmp_path}/nowhere/Gone.git", Cite = "{tmp_path}/upstream/extensions/Cite" }}\n')
    result = deployment.sync(check=False)
    assert result.returncode == 1
    summary = deployment.summary(result)
    assert summary["failed"] == 1 and summary["built"] == 1
    assert "FAILED extensions/Gone" in result.stderr
    gone = info(deployment, "Gone")
    assert gone["branches"] == {} and "git ls-remote failed" in gone["error"]
    status = json.loads(deployment.cli("status").stdout)
    assert [e["name"] for e in status["repository_errors"]] == ["Gone"]
    assert status["runs"][0]["status"] == "failed"


def test_overlapping_sync_exits_at_once_with_status_0(deployment, upstream):
    upstream("Cite")
    with sync_lock(deployment.settings().lock_file):
        result = deployment.sync(check=False, timeout=30)
    assert result.returncode == 0
    assert "another tardist sync is running" in result.stderr
    assert result.stdout == ""
    assert not (deployment.root / "tarballs").exists()
    assert deployment.summary(deployment.sync())["built"] == 1


@pytest.mark.slow
def test_only_and_kind_limit_the_run(deployment, upstream):
    upstream("Cite")
    upstream("Echo")
    upstream("Vector", kind="skins", files={"skin.json": "{}"})
    assert deployment.summary(deployment.sync("--only", "Echo"))["repositories"] == 1
    assert deployment.summary(deployment.sync("--kind", "skins", "--jobs", "1"))["repositories"] == 1
    assert deployment.summary(deployment.sync())["built"] == 1  # only Cite was left
    result = deployment.sync("--only", "Nope", check=False)
    assert result.returncode == 2 and "--only: no configured repository is named Nope" in result.stderr
    result = deployment.sync("--kind", "extension", check=False)
    assert result.returncode == 2
    assert "--kind: no source is of kind 'extension' (configured: extensions, skins)" in result.stderr


def test_deleted_branch_disappears_from_info(deployment, upstream):
    repo = upstream("Cite")
    git(repo.path, "branch", "REL1_45")
    deployment.sync()
    git(repo.path, "branch", "-D", "REL1_45")
    deployment.sync()
    assert list(info(deployment, "Cite")["branches"]) == ["master"]


@pytest.mark.slow
def test_config_errors_name_file_key_and_expectation(deployment):
    deployment.config.write_text('jobs = "many"\n')
    result = deployment.sync(check=False)
    assert result.returncode == 2
    assert f"{deployment.config}: key 'jobs': expected a whole number >= 0, got 'many'" in result.stderr
    deployment.config.write_text('colour = "blue"\n')
    assert "unknown key 'colour'" in deployment.sync(check=False).stderr
    deployment.config.write_text('[[source]]\nkind = "extensions"\ntype = "svn"\n')
    result = deployment.sync(check=False)
    assert result.returncode == 2 and "source[0]: key 'type': expected one of directory, list, gerrit" in result.stderr
    deployment.config.write_text('[[source]]\nkind = "extensions"\ntype = "directory"\npath = "/no/such"\n')
    result = deployment.sync(check=False)  # not a config error: the folder may be unmounted for a while
    assert result.returncode == 1
    assert "source[0] (extensions) cannot be listed: /no/such is not a folder" in result.stderr
    deployment.config.write_text('branches = ["wmf/1.45"]\n')
    assert "is not a plain branch name" in deployment.sync(check=False).stderr
    assert deployment.cli("sync", "--jobs", "0").returncode == 2


def test_missing_default_config_means_nothing_configured_but_a_named_one_is_an_error(tmp_path):
    deployment = Deployment(tmp_path, tmp_path / "absent.toml")
    result = deployment.cli("status")
    assert result.returncode == 2 and "absent.toml: no such configuration file" in result.stderr
    result = subprocess.run([TARDIST, "sync"], cwd=tmp_path, capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if not k.startswith("TARDIST_")})
    assert result.returncode == 0 and "no [[source]] configured" in result.stderr
    assert json.loads(result.stdout)["repositories"] == 0


@pytest.mark.slow
def test_info_is_rendered_again_when_branches_or_tarball_url_change(deployment, upstream):
    repo = upstream("Cite")
    git(repo.path, "branch", "REL1_45")
    deployment.sync()
    assert list(info(deployment, "Cite")["branches"]) == ["master", "REL1_45"]
    deployment.write_config(branches=["REL1_45", "master"], tarball_url="https://cdn.example.org/dist/")
    deployment.sync()  # nothing changed upstream: only the answers are rendered again
    facts = info(deployment, "Cite")
    assert list(facts["branches"]) == ["REL1_45", "master"]
    assert facts["branches"]["master"]["url"].startswith("https://cdn.example.org/dist/extensions/Cite-master-")
    deployment.write_config(branches=["master"])
    assert deployment.cli("init-db").returncode == 0  # init-db renders them too
    assert list(info(deployment, "Cite")["branches"]) == ["master"]


def test_a_configured_url_that_git_would_read_as_an_option_is_refused(deployment, tmp_path):
    marker = tmp_path / "ran"
    deployment.write_config(f'[[source]]\nkind = "extensions"\ntype = "list"\n'
                            f'repos = {{ Evil = "--upload-pack=touch {marker}" }}\n')
    result = deployment.sync(check=False)
    assert result.returncode == 1
    facts = info(deployment, "Evil")
    assert facts["error"] == "refusing repository URL '--upload-pack=touch " + str(marker) + "'"
    assert not marker.exists()


def test_submodules_nested_deeper_than_the_limit_fail_that_branch(deployment, upstream):
    level = upstream("Level0", kind="lib", files={"leaf.txt": "leaf\n"})
    for depth in range(1, MAX_SUBMODULE_DEPTH + 2):
        outer = upstream(f"Level{depth}", kind="lib", files={"here.txt": f"level {depth}\n"})
        outer.pin_submodule("inner", str(level.path), level.head())
        level = outer
    repo = upstream("Deep")
    head = repo.pin_submodule("lib", str(level.path), level.head())
    result = deployment.sync(check=False)
    assert result.returncode == 1
    assert info(deployment, "Deep")["errors"]["master"] == (
        f"submodule {'lib' + '/inner' * MAX_SUBMODULE_DEPTH}: nested more than {MAX_SUBMODULE_DEPTH} levels")
    assert not tarball(deployment, "Deep", "master", head).exists()


def test_a_submodule_without_a_url_in_gitmodules_fails_that_branch(deployment, upstream):
    lib = upstream("Lib", kind="lib", files={"lib.js": "lib\n"})
    repo = upstream("NoUrl")
    repo.pin_submodule("lib", str(lib.path), lib.head())
    git(repo.path, "config", "-f", ".gitmodules", "--unset", f"submodule.module{repo.commits - 1}.url")
    git(repo.path, "commit", "--quiet", "-m", "forget the URL", ".gitmodules")  # not add -A: lib is no folder here
    head = repo.head()
    result = deployment.sync(check=False)
    assert result.returncode == 1
    assert info(deployment, "NoUrl")["errors"]["master"] == "submodule lib: no URL for it in .gitmodules"
    assert not tarball(deployment, "NoUrl", "master", head).exists()


def test_gitinfo_names_the_public_url_never_a_server_path(deployment, upstream, tmp_path):
    upstream("Echo")
    deployment.write_config(f'[[source]]\nkind = "extensions"\ntype = "directory"\n'
                            f'path = "{tmp_path}/upstream/extensions"\n'
                            f'public_url = "https://gerrit.example.org/r/mediawiki/extensions/{{name}}"\n')
    deployment.sync()
    facts = info(deployment, "Echo")
    files = tar_files(deployment.root / "tarballs/extensions" / facts["branches"]["master"]["tarball"])
    remote = json.loads(files["Echo/gitinfo.json"])["remoteURL"]
    assert remote == facts["repository"] == "https://gerrit.example.org/r/mediawiki/extensions/Echo"
