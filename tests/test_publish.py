"""published/: the API's answers as static files, byte-identical to what the app answers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TARDIST, assert_published_is_the_app, directory_source, git, on_disk, populate

from worker.publish import _publish_lock, publish


def test_every_published_file_is_the_apps_answer(deployment, upstream, tmp_path):
    populate(deployment, upstream, tmp_path)
    files = assert_published_is_the_app(deployment)
    assert {"list.json", "list/extensions.json", "list/skins.json", "list/apps.json", "info/extensions.json",
            "info/skins.json", "info/apps.json", "info/extensions/Cite.json", "info/extensions/Broken.json",
            "info/extensions/NoManifest.json", "info/skins/Vector.json", "info/apps/Gone.json",
            "gerrit/projects/mediawiki/extensions.json", "gerrit/projects/mediawiki/extensions/Cite/branches.json",
            "gerrit/projects/mediawiki/skins/Vector/branches.json"} <= files
    cite = json.loads((deployment.root / "published/info/extensions/Cite.json").read_bytes())
    assert list(cite["branches"]) == ["master", "REL1_45"]


@pytest.mark.slow
def test_only_what_changed_is_rewritten_and_removed_answers_go(deployment, upstream, tmp_path):
    cite = upstream("Cite")
    upstream("Echo")
    upstream("Vector", kind="skins", files={"skin.json": json.dumps({"name": "Vector"})})
    deployment.sync()
    before = on_disk(deployment)

    again = deployment.cli("publish", check=True)
    assert json.loads(again.stdout)["written"] == 0 and on_disk(deployment) == before
    etag = deployment.app().test_client().get("/info/extensions").headers["ETag"]
    deployment.sync()  # finds nothing new: no answer changes, so no file is rewritten and no ETag moves
    assert on_disk(deployment) == before
    assert deployment.app().test_client().get("/info/extensions").headers["ETag"] == etag

    cite.commit({"README.md": "changed\n"})
    deployment.sync("--only", "Cite")
    after = on_disk(deployment)
    rewritten = {path for path in before if after[path] != before[path]}
    assert rewritten == {"info/extensions/Cite.json", "info/extensions.json",
                         "gerrit/projects/mediawiki/extensions/Cite/branches.json"}
    assert_published_is_the_app(deployment)

    git(cite.path, "branch", "REL1_45")  # a change the whole run records
    (tmp_path / "upstream/extensions/Echo").rename(tmp_path / "Echo-moved-away")
    deployment.write_config(directory_source("extensions", tmp_path / "upstream/extensions"))  # no skins
    deployment.sync()
    files = assert_published_is_the_app(deployment)
    assert "info/extensions/Echo.json" not in files and not any("skins" in path for path in files)
    assert not (deployment.root / "published/info/skins").exists()
    assert json.loads((deployment.root / "published/list.json").read_bytes()) == {"extensions": ["Cite"]}


def test_a_settings_change_republishes_every_answer(deployment, upstream):
    git(upstream("Cite").path, "branch", "REL1_45")
    deployment.sync()
    deployment.write_config(tarball_url="https://downloads.example.org/dist", branches=["REL1_45", "master"])
    deployment.cli("publish", check=True)
    assert_published_is_the_app(deployment)
    cite = json.loads((deployment.root / "published/info/extensions/Cite.json").read_bytes())
    assert list(cite["branches"]) == ["REL1_45", "master"]
    assert cite["branches"]["master"]["url"].startswith("https://downloads.example.org/dist/extensions/Cite-master-")


@pytest.mark.slow
def test_gc_repairs_published_and_init_db_publishes(deployment, upstream):
    upstream("Cite")
    deployment.sync()
    root = deployment.root / "published"
    (root / "info/extensions/Cite.json").unlink()
    (root / "info/extensions/Stray.json").write_text("{}")
    (root / "info/extensions/.tmp-Cite.json.999").write_text("{")  # a killed publish's leftover
    (root / "old/kind").mkdir(parents=True)
    (root / "old/kind/x.json").write_text("{}")
    assert deployment.cli("gc", check=True).returncode == 0
    assert_published_is_the_app(deployment)
    assert not (root / "old").exists()

    (root / "list.json").unlink()
    deployment.cli("init-db", check=True)
    assert_published_is_the_app(deployment)


@pytest.mark.slow
def test_a_failed_publish_is_a_warning_and_the_next_one_checks_everything(deployment, upstream):
    cite = upstream("Cite")
    upstream("Echo")
    deployment.sync()
    root = deployment.root / "published"
    (root / "info/extensions/Echo.json").unlink()
    (root / "list").rename(root / "list-aside")
    (root / "list").write_text("in the way")  # list/extensions.json cannot be written
    cite.commit({"README.md": "changed\n"})
    result = deployment.sync("--only", "Cite")
    assert "published answers not updated" in result.stderr and "Not a directory" in result.stderr
    assert deployment.summary(result)["built"] == 1  # the sync itself is recorded

    (root / "list").unlink()
    (root / "list-aside").rename(root / "list")
    deployment.sync("--only", "Cite")  # changes nothing about Echo, but the failed publish makes it check all
    assert_published_is_the_app(deployment)


def test_a_long_run_publishes_as_it_goes(deployment, upstream, monkeypatch):
    from worker import run as sync

    upstream("Cite")
    upstream("Echo")
    reports = []
    monkeypatch.setattr(sync, "PUBLISH_EVERY", 0)  # a long run: publish after every repository
    monkeypatch.setattr(sync, "publish", lambda *args: reports.append(publish(*args)))
    sync.run_sync(deployment.settings())
    # A new database: everything (the list and each kind's three files); then, after each repository,
    # its two files with the list and its kind's three (the threads record beside the publishing, so
    # the second repository may be in the first publish already); at the end nothing is left to write.
    written = [report["written"] for report in reports]
    assert len(written) == 4 and written[0] == 7 and written[1] == 6 and written[3] == 0
    assert written[2] in (2, 6), written
    assert_published_is_the_app(deployment)


def test_publishing_can_be_turned_off(deployment, upstream):
    upstream("Cite")
    deployment.write_config(published="")
    deployment.sync()
    assert not (deployment.root / "published").exists()
    result = deployment.cli("publish", check=True)
    assert "nothing to publish" in result.stderr


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed (CI installs it)")
def test_the_crontabs_edge_copy_line_works_as_written(deployment, upstream, tmp_path):
    upstream("Cite")
    deployment.sync()
    (deployment.root / "published/info/extensions/.tmp-Cite.json.1").write_text("{")  # a publish in progress
    crontab = (Path(__file__).resolve().parents[1] / "crontab").read_text()
    line = next(line for line in crontab.splitlines() if "rsync" in line)
    assert line.startswith("#")  # switched off until the operator has an edge server
    command = line.lstrip("#").split(" ", 5)[5]  # without the five schedule fields
    edge = tmp_path / "edge"
    edge.mkdir()
    command = command.replace("cd /srv/tardist", f"cd {deployment.root}").replace("edge1:/srv/tardist", str(edge))
    subprocess.run(["sh", "-c", command], check=True, timeout=60)
    for folder in ("published", "tarballs"):
        source = {p.relative_to(deployment.root / folder): p.read_bytes()
                  for p in (deployment.root / folder).rglob("*") if p.is_file() and not p.name.startswith(".")}
        copied = {p.relative_to(edge / folder): p.read_bytes() for p in (edge / folder).rglob("*") if p.is_file()}
        assert copied == source and source


def test_nothing_outside_tardist_web_imports_flask():
    root = Path(__file__).resolve().parents[1]
    modules = sorted(".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
                     for package in ("tardist", "worker") for path in (root / package).rglob("*.py")
                     if "web" not in path.relative_to(root).parts)
    assert "worker.cli" in modules and "tardist.store" in modules and len(modules) > 25
    code = (f"import sys, {', '.join(modules)}; "
            "print([m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug', 'jinja2')])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert result.stdout.strip() == "[]"


def test_a_reader_of_a_published_file_keeps_its_whole_answer_while_a_new_one_replaces_it(deployment, upstream):
    cite = upstream("Cite")
    deployment.sync()
    path = deployment.root / "published/info/extensions/Cite.json"
    old = path.read_bytes()
    with open(path, "rb") as reader:  # as nginx's open_file_cache holds it
        cite.commit({"NEWS": "moved\n"})
        deployment.sync()
        assert reader.read() == old
    assert path.read_bytes() != old


@pytest.mark.slow
def test_publishes_take_turns(deployment, upstream):
    upstream("Cite")
    deployment.sync()
    settings = deployment.settings()
    listing = settings.published / "list.json"
    listing.unlink()
    with _publish_lock(settings):
        process = subprocess.Popen([TARDIST, "publish"], cwd=deployment.root, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "TARDIST_CONFIG": str(deployment.config)})
        time.sleep(2)
        assert process.poll() is None and not listing.exists(), "it waits for the publish in progress"
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert listing.is_file() and json.loads(out)["written"] == 1
