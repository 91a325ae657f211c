"""`tardist gc`: superseded tarballs and removed repositories go after the retention period, current ones never."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from conftest import git

from worker.gc import collect_garbage

LATER = datetime.now(timezone.utc) + timedelta(days=8)


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
    report = collect_garbage(deployment.settings(), now=datetime.now(timezone.utc) + timedelta(days=3650))
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


def test_a_source_that_suddenly_lists_nothing_removes_nothing(deployment, upstream, tmp_path):
    repo = upstream("Cite")
    deployment.sync()
    repo.path.rename(tmp_path / "Cite-unmounted")  # the folder is empty now, as an unmounted disk would be
    result = deployment.sync()
    assert "source[0]: lists no repositories" in result.stderr
    assert "no extensions listed at all: none of them is marked removed this run" in result.stderr
    assert deployment.app().test_client().get("/list/extensions").get_json() == {"extensions": ["Cite"]}
    report = collect_garbage(deployment.settings(), now=LATER)
    assert report["tarballs"] == 0 and report["mirrors"] == 0
