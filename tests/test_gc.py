"""`tardist gc`: superseded tarballs and removed repositories go after the retention period, current ones never."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from helpers import directory_source, git

from tardist import records, schema, store
from tardist.info import InfoView
from tardist.timestamps import utc_iso
from worker.gc import collect_garbage
from worker.lock import sync_lock

LATER = datetime.now(UTC) + timedelta(days=8)


def tarballs(deployment) -> set[str]:
    return {p.name for p in (deployment.root / "tarballs").rglob("*.tar.gz")}


def test_superseded_tarballs_stay_for_the_retention_period_then_go(deployment, upstream):
    repo = upstream("Cite")
    old = repo.head()
    deployment.sync()
    new = repo.commit({"README.md": "new\n"})
    deployment.sync()
    both = {f"Cite-master-{old[:7]}.tar.gz", f"Cite-master-{new[:7]}.tar.gz"}
    assert tarballs(deployment) == both
    report = collect_garbage(deployment.settings())  # superseded just now: kept
    assert report["tarballs"] == 0 and tarballs(deployment) == both
    dry = collect_garbage(deployment.settings(), dry_run=True, now=LATER)
    assert dry["tarballs"] == 1 and tarballs(deployment) == both
    report = collect_garbage(deployment.settings(), now=LATER)
    assert report["tarballs"] == 1 and report["removed"][0].endswith(f"Cite-master-{old[:7]}.tar.gz")
    assert tarballs(deployment) == {f"Cite-master-{new[:7]}.tar.gz"}


def test_current_tarballs_are_never_removed(deployment, upstream):
    upstream("Cite")
    deployment.sync()
    before = tarballs(deployment)
    report = collect_garbage(deployment.settings(), now=datetime.now(UTC) + timedelta(days=3650))
    assert report["tarballs"] == 0 and tarballs(deployment) == before


def test_deleted_branch_tarball_follows_retention(deployment, upstream):
    repo = upstream("Cite")
    git(repo.path, "branch", "REL1_45")
    deployment.sync()
    git(repo.path, "branch", "-D", "REL1_45")
    deployment.sync()
    assert any("REL1_45" in name for name in tarballs(deployment)), "kept for people who linked it"
    collect_garbage(deployment.settings(), now=LATER)
    assert not any("REL1_45" in name for name in tarballs(deployment))
    assert any("master" in name for name in tarballs(deployment))


def test_repository_that_left_every_source_goes_after_the_grace_period(deployment, upstream, tmp_path):
    repo = upstream("Cite")
    upstream("Echo")
    deployment.sync()
    repo.path.rename(tmp_path / "Cite-moved-away")
    deployment.sync()
    client = deployment.app().test_client()
    assert client.get("/list/extensions").get_json() == {"extensions": ["Echo"]}
    assert client.get("/info/extensions/Cite").status_code == 404
    mirror = deployment.root / "mirrors/extensions/Cite.git"
    assert mirror.is_dir() and any(n.startswith("Cite-") for n in tarballs(deployment))
    report = collect_garbage(deployment.settings(), now=LATER)
    assert (report["tarballs"], report["mirrors"]) == (1, 1)
    assert not mirror.exists() and not any(n.startswith("Cite-") for n in tarballs(deployment))
    assert (deployment.root / "mirrors/extensions/Echo.git").is_dir()
    assert sorted(p.name for p in (deployment.root / "mirrors/extensions").iterdir()) == ["Echo.git"]


def test_gc_clears_what_a_killed_run_left_of_a_mirror(deployment, upstream):
    upstream("Cite")
    deployment.sync()
    leftover = deployment.root / "mirrors/extensions/.tmp-Gone.git"
    (leftover / "objects").mkdir(parents=True)
    report = collect_garbage(deployment.settings())
    assert report["mirrors"] == 1 and not leftover.exists()
    assert (deployment.root / "mirrors/extensions/Cite.git").is_dir()


@pytest.mark.slow
def test_gc_command_dry_run_lists_and_removes_nothing(deployment, upstream):
    repo = upstream("Cite")
    deployment.sync()
    repo.commit({"README.md": "new\n"})
    deployment.sync()
    deployment.write_config(retention_days=0)
    before = tarballs(deployment)
    result = deployment.cli("gc", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tarballs"] == 1 and "would remove" in result.stderr
    assert tarballs(deployment) == before
    result = deployment.cli("gc")
    assert json.loads(result.stdout)["tarballs"] == 1 and len(tarballs(deployment)) == 1


@pytest.mark.slow
def test_a_source_that_suddenly_lists_nothing_removes_nothing(deployment, upstream, tmp_path):
    repo = upstream("Cite")
    deployment.sync()
    repo.path.rename(tmp_path / "Cite-unmounted")  # the folder is empty now, as an unmounted disk would be
    result = deployment.sync()
    assert "source[0] (extensions directory " in result.stderr
    assert "lists no repositories: the 1 it listed before are kept, not marked removed" in result.stderr
    assert "lists no repositories: the 1" in json.loads(deployment.cli("status").stdout)["runs"][0]["warnings"][0]
    assert deployment.app().test_client().get("/list/extensions").get_json() == {"extensions": ["Cite"]}
    report = collect_garbage(deployment.settings(), now=LATER)
    assert report["tarballs"] == 0 and report["mirrors"] == 0


def test_an_emptied_source_keeps_its_repositories_whatever_another_source_of_its_kind_lists(
        deployment, upstream, tmp_path):
    upstream("Cite")
    second = tmp_path / "second"
    echo = upstream("Echo")
    second.mkdir()
    echo.path.rename(second / "Echo")
    upstream("Math")
    deployment.write_config(directory_source("extensions", tmp_path / "upstream/extensions")
                            + directory_source("extensions", second))
    deployment.sync()
    (second / "Echo").rename(tmp_path / "Echo-unmounted")  # the second folder is empty now
    result = deployment.sync()
    assert f"source[1] (extensions directory {second}) lists no repositories: the 1 it listed before are kept" \
        in result.stderr
    client = deployment.app().test_client()
    assert client.get("/list/extensions").get_json() == {"extensions": ["Cite", "Echo", "Math"]}
    report = collect_garbage(deployment.settings(), now=LATER)
    assert (report["tarballs"], report["mirrors"]) == (0, 0)
    assert (deployment.root / "mirrors/extensions/Echo.git").is_dir()
    # A source that still lists something removes what it stopped listing, as before.
    (tmp_path / "upstream/extensions/Math").rename(tmp_path / "Math-gone")
    deployment.sync()
    assert client.get("/list/extensions").get_json() == {"extensions": ["Cite", "Echo"]}


@pytest.mark.slow
def test_submodule_mirrors_go_when_no_kept_tarball_uses_them(deployment, upstream):
    lib = upstream("Lib", kind="lib", files={"lib.js": "lib\n"})
    other = upstream("Other", kind="lib", files={"other.js": "other\n"})
    repo = upstream("VisualEditor")
    repo.pin_submodule("lib", str(lib.path), lib.head())
    keeper = upstream("Keeper")
    keeper.pin_submodule("other", str(other.path), other.head())
    deployment.sync()
    modules = deployment.root / "mirrors/_modules"
    assert len(list(modules.glob("*.git"))) == 2
    git(repo.path, "rm", "--quiet", "lib")
    repo.commit(message="drop the submodule")
    deployment.sync()
    report = collect_garbage(deployment.settings())  # the old tarball, which has lib/, is kept for now
    assert report["mirrors"] == 0 and len(list(modules.glob("*.git"))) == 2
    dry = collect_garbage(deployment.settings(), dry_run=True, now=LATER)
    assert dry["mirrors"] == 1 and len(list(modules.glob("*.git"))) == 2
    report = collect_garbage(deployment.settings(), now=LATER)
    assert report["mirrors"] == 1 and report["removed"][-1].startswith(str(modules / "Lib-"))
    assert [p.name[:6] for p in modules.glob("*.git")] == ["Other-"]
    assert deployment.sync().returncode == 0


def test_submodule_mirrors_are_kept_while_a_tarball_does_not_say_which_it_uses(deployment, upstream):
    lib = upstream("Lib", kind="lib", files={"lib.js": "lib\n"})
    upstream("VisualEditor").pin_submodule("lib", str(lib.path), lib.head())
    upstream("Cite")
    deployment.sync()
    with sqlite3.connect(deployment.settings().database) as conn:  # as built before tardist recorded it
        conn.execute("UPDATE tarballs SET modules = NULL WHERE name = 'Cite'")
    result = deployment.cli("gc")
    assert json.loads(result.stdout)["mirrors"] == 0
    assert "warning: submodule mirrors kept: some tarballs were built before" in result.stderr
    assert len(list((deployment.root / "mirrors/_modules").glob("*.git"))) == 1


def test_orphan_tarballs_go_after_the_retention_period(deployment, upstream):
    upstream("Cite")
    deployment.sync()
    folder = deployment.root / "tarballs/extensions"
    orphan, fresh = folder / "Cite-master-0000000.tar.gz", folder / "Cite-master-1111111.tar.gz"
    orphan.write_bytes(b"published, never recorded")
    fresh.write_bytes(b"published, never recorded, just now")
    eight_days_ago = (datetime.now(UTC) - timedelta(days=8)).timestamp()
    os.utime(orphan, (eight_days_ago, eight_days_ago))
    report = collect_garbage(deployment.settings())
    assert report["removed"] == [str(orphan)] and report["tarballs"] == 1
    assert not orphan.exists() and fresh.exists()
    fresh.unlink()  # not a tarball: every test's published tarballs are unpacked at its end


def test_gc_waits_for_no_running_sync(deployment, upstream):
    upstream("Cite")
    deployment.sync()
    deployment.write_config(retention_days=0)
    with sync_lock(deployment.settings().lock_file):
        result = deployment.cli("gc")
    assert result.returncode == 0
    assert "another tardist sync is running" in result.stderr and "gc not started" in result.stderr
    assert result.stdout == ""


def test_gc_dry_run_lists_a_removed_repository_and_keeps_it(deployment, upstream, tmp_path):
    repo = upstream("Cite")
    deployment.sync()
    repo.path.rename(tmp_path / "Cite-moved-away")
    upstream("Echo")
    deployment.sync()
    deployment.write_config(retention_days=0)
    mirror = deployment.root / "mirrors/extensions/Cite.git"
    result = deployment.cli("gc", "--dry-run")
    assert json.loads(result.stdout)["mirrors"] == 1
    assert f"would remove {mirror}" in result.stderr
    assert mirror.is_dir() and any(n.startswith("Cite-") for n in tarballs(deployment))


def test_a_repository_that_returns_within_the_retention_period_is_whole_again(deployment, upstream, tmp_path):
    repo = upstream("Cite")
    upstream("Echo")
    deployment.sync()
    away = tmp_path / "Cite-away"
    repo.path.rename(away)
    deployment.sync()
    away.rename(repo.path)
    deployment.sync()
    client = deployment.app().test_client()
    assert client.get("/list/extensions").get_json() == {"extensions": ["Cite", "Echo"]}
    report = collect_garbage(deployment.settings(), now=LATER)
    assert (report["tarballs"], report["mirrors"]) == (0, 0)
    url = client.get("/info/extensions/Cite").get_json()["branches"]["master"]["url"]
    response = client.get(url)
    assert response.status_code == 200
    response.close()


def test_a_repository_recorded_beside_a_full_run_is_not_marked_removed_by_it(deployment, upstream):
    upstream("Cite")
    deployment.sync()
    listed_at = utc_iso(datetime.now(UTC) - timedelta(seconds=1))  # the full run lists...
    db = schema.open_writer(deployment.settings().database)
    try:
        # ...then the worker syncs a repository pushed since (a webhook), which that listing lacks.
        store.save_repo(db, records.RepoRecord("extensions", "New", None, source="extensions directory x"),
                        InfoView.of(deployment.settings()))
        assert store.mark_removed(db, {("extensions", "Cite")}, listed_at=listed_at) == []
        assert store.mark_removed(db, {("extensions", "Cite")}) == [("extensions", "New")]  # a later run's
    finally:
        db.close()
