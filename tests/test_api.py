"""The JSON API through the Flask test client, on deployments synced by the real worker."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import Deployment, Repo, extension_files, git, make_old_database

from tardist import create_app, schema, store
from tardist.info import InfoView
from tardist.records import BranchRecord, RepoRecord
from tardist.web import context, reader
from worker.lock import sync_lock

JSON_URLS = ["/", "/list", "/list/extensions", "/info/extensions", "/info/extensions/Cite",
             "/info/extensions?names=Cite|Broken", "/status"]


def get_json(client, url: str, status: int = 200, **headers: str):
    """GET url; check the status and that the answer is JSON; return the decoded body."""
    response = client.get(url, headers=headers)
    assert response.status_code == status, response.data
    assert response.mimetype == "application/json"
    return response.get_json()


@dataclass
class Site:
    """A deployment synced once by the worker, and the upstream repositories it mirrors."""

    deployment: Deployment
    repos: dict[str, Repo]

    def tarball(self, name: str, branch: str, kind: str = "extensions") -> Path:
        """The tarball file the worker built for a branch's head."""
        commit = self.repos[name].head(f"refs/heads/{branch}")
        return self.deployment.root / "tarballs" / kind / f"{name}-{branch}-{commit[:7]}.tar.gz"


def make_repositories(make) -> dict[str, Repo]:
    """Cite (three branches), LateManifest (manifest only on REL1_45), Broken (master fails), skin Vector."""
    cite = make("Cite")
    git(cite.path, "branch", "REL1_44")
    cite.commit({"extension.json": extension_files("Cite", version="2.0.0")["extension.json"]})
    git(cite.path, "branch", "REL1_45")

    late = make("LateManifest", files=extension_files("LateManifest", author="Late Author"))
    git(late.path, "branch", "REL1_45")
    late.commit({"extension.json": None})

    lib = make("Lib", kind="lib", files={"lib.js": "lib\n"})
    broken = make("Broken")
    git(broken.path, "branch", "REL1_45")
    broken.pin_submodule("lib", str(lib.path), "1" * 40)  # a commit that does not exist

    vector = make("Vector", kind="skins", files={"skin.json": json.dumps(
        {"name": "Vector", "description": "The Vector skin", "type": "skin", "author": "Someone"})})
    return {"Cite": cite, "LateManifest": late, "Broken": broken, "Vector": vector}


@pytest.fixture(scope="module")
def site(module_upstream, module_deployment) -> Site:
    """One deployment synced by the real worker, shared by the tests that only read."""
    deployment = module_deployment
    repos = make_repositories(module_upstream)
    result = deployment.sync(check=False)
    assert result.returncode == 1, result.stderr  # Broken's master fails; the rest is built
    return Site(deployment, repos)


@pytest.fixture
def client(site: Site):
    """A test client of the shared deployment's app."""
    return site.deployment.app().test_client()


def test_index_names_the_service_and_its_endpoints(client):
    index = get_json(client, "/")
    assert index["service"] == "tardist" and index["version"]
    assert index["endpoints"]["list"] == "/list"
    assert index["endpoints"]["download"] == "/download/<kind>/<name>/<branch>"


def test_list_gives_every_kind_with_sorted_names(client):
    assert get_json(client, "/list") == {"extensions": ["Broken", "Cite", "LateManifest"], "skins": ["Vector"]}
    assert get_json(client, "/list/skins") == {"skins": ["Vector"]}
    assert get_json(client, "/list/extensions") == {"extensions": ["Broken", "Cite", "LateManifest"]}


def test_info_describes_a_repository_and_each_branch_in_configured_order(site, client):
    facts = get_json(client, "/info/extensions/Cite")
    cite = site.repos["Cite"]
    assert list(facts["branches"]) == ["master", "REL1_45", "REL1_44"]  # as configured, not alphabetical
    assert {k: facts[k] for k in ("name", "kind", "repository", "description", "license", "url", "authors",
                                  "type", "errors", "error")} == {
        "name": "Cite", "kind": "extensions", "repository": None, "description": "The Cite extension",
        "license": "GPL-2.0-or-later", "url": "https://example.org/Cite", "authors": ["Ada", "Grace"],
        "type": "other", "errors": {}, "error": None}
    for branch, version in [("master", "2.0.0"), ("REL1_45", "2.0.0"), ("REL1_44", "1.0.0")]:
        facts_of_branch = facts["branches"][branch]
        commit = cite.head(f"refs/heads/{branch}")
        content = site.tarball("Cite", branch).read_bytes()
        assert facts_of_branch["commit"] == commit and facts_of_branch["sha7"] == commit[:7]
        assert facts_of_branch["tarball"] == f"Cite-{branch}-{commit[:7]}.tar.gz"
        assert facts_of_branch["url"] == f"/dist/extensions/Cite-{branch}-{commit[:7]}.tar.gz"
        assert facts_of_branch["size"] == len(content)
        assert facts_of_branch["sha256"] == hashlib.sha256(content).hexdigest()
        assert facts_of_branch["version"] == version
        assert facts_of_branch["requires"] == {"MediaWiki": ">= 1.45.0"}
        assert facts_of_branch["manifest_errors"] == []


def test_repository_fields_come_from_the_first_branch_with_a_manifest(client):
    facts = get_json(client, "/info/extensions/LateManifest")
    assert list(facts["branches"]) == ["master", "REL1_45"]
    assert facts["branches"]["master"]["manifest_errors"] == ["no extension.json or skin.json"]
    assert facts["branches"]["master"]["version"] is None
    assert facts["description"] == "The LateManifest extension"
    assert facts["authors"] == ["Late Author"]


def test_a_failed_branch_is_listed_in_errors_and_has_no_tarball(client):
    facts = get_json(client, "/info/extensions/Broken")
    assert list(facts["branches"]) == ["REL1_45"]
    assert list(facts["errors"]) == ["master"]
    assert f"commit {'1' * 40} is not in" in facts["errors"]["master"]
    assert facts["error"] is None


def test_skins_are_their_own_kind(client):
    facts = get_json(client, "/info/skins/Vector")
    assert facts["kind"] == "skins" and facts["description"] == "The Vector skin"
    assert facts["branches"]["master"]["url"].startswith("/dist/skins/Vector-master-")


def test_batch_info_gives_the_named_repositories_as_single_info_does(client):
    batch = get_json(client, "/info/extensions?names=Cite|Broken|NotThere")
    assert list(batch) == ["extensions"]
    assert list(batch["extensions"]) == ["Broken", "Cite"]
    for name in ("Broken", "Cite"):
        assert batch["extensions"][name] == get_json(client, f"/info/extensions/{name}")
    everything = get_json(client, "/info/extensions")
    assert list(everything["extensions"]) == ["Broken", "Cite", "LateManifest"]
    assert get_json(client, "/info/skins") == {"skins": {"Vector": get_json(client, "/info/skins/Vector")}}


def test_download_redirects_to_the_current_tarball(site, client):
    response = client.get("/download/extensions/Cite/REL1_44")
    assert response.status_code == 302
    url = get_json(client, "/info/extensions/Cite")["branches"]["REL1_44"]["url"]
    assert response.headers["Location"] == url
    assert "max-age" in response.headers["Cache-Control"]
    followed = client.get("/download/extensions/Cite/REL1_44", follow_redirects=True)
    assert followed.status_code == 200
    assert followed.data == site.tarball("Cite", "REL1_44").read_bytes()
    followed.close()


def test_dist_serves_the_tarball_bytes_when_flask_is_alone(site, client):
    for name, branch, kind in [("Cite", "master", "extensions"), ("Vector", "master", "skins")]:
        path = site.tarball(name, branch, kind)
        response = client.get(f"/dist/{kind}/{path.name}")
        assert response.status_code == 200
        assert response.data == path.read_bytes()
        assert response.mimetype == "application/gzip"
        assert "immutable" in response.headers["Cache-Control"]
        response.close()


def test_status_gives_the_same_facts_as_the_command(site, client):
    status = get_json(client, "/status")
    assert status == json.loads(site.deployment.cli("status").stdout)
    assert status["runs"][0]["status"] == "failed"
    assert status["counts"]["repositories"] == {"extensions": 3, "skins": 1}
    assert [(e["name"], e["branch"]) for e in status["branch_errors"]] == [("Broken", "master")]


def test_json_answers_carry_an_etag_and_answer_if_none_match_with_304(client):
    for url in JSON_URLS:
        response = client.get(url)
        etag = response.headers["ETag"]
        assert response.status_code == 200 and etag.startswith('"') and etag.endswith('"')
        expected = "no-cache" if url == "/status" else "public, max-age=5"
        assert response.headers["Cache-Control"] == expected
        for sent in (etag, f"W/{etag}", f'"other", {etag}'):
            again = client.get(url, headers={"If-None-Match": sent})
            assert again.status_code == 304, (url, sent)
            assert again.data == b"" and again.headers["ETag"] == etag
        assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


def test_every_app_process_gives_the_same_etag(site):
    """Two gunicorn workers must agree, or nginx and clients revalidate for nothing."""
    first, second = site.deployment.app().test_client(), site.deployment.app().test_client()
    for url in JSON_URLS:
        assert first.get(url).headers["ETag"] == second.get(url).headers["ETag"]


def test_answers_stay_right_when_the_cache_cannot_hold_them(site, monkeypatch):
    monkeypatch.setattr(reader, "MAX_CACHED_BYTES", 100)  # every answer is evicted at once
    client = site.deployment.app().test_client()
    first, second = client.get("/info/extensions"), client.get("/info/extensions")
    assert first.data == second.data and first.headers["ETag"] == second.headers["ETag"]
    assert get_json(client, "/list/skins") == {"skins": ["Vector"]}


def test_answers_change_after_a_new_sync(deployment, upstream):
    cite = upstream("Cite")
    deployment.sync()
    client = deployment.app().test_client()
    before = client.get("/info/extensions/Cite")
    listed = client.get("/list")
    assert before.get_json()["branches"]["master"]["commit"] == cite.head()
    new = cite.commit({"README.md": "changed\n"})
    upstream("Echo")
    deployment.sync()
    after = client.get("/info/extensions/Cite", headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200
    assert after.get_json()["branches"]["master"]["commit"] == new
    assert after.headers["ETag"] != before.headers["ETag"]
    assert client.get("/list", headers={"If-None-Match": listed.headers["ETag"]}).get_json() == {
        "extensions": ["Cite", "Echo"], "skins": []}
    assert client.get("/download/extensions/Cite/master").headers["Location"].endswith(f"-{new[:7]}.tar.gz")


def test_a_replaced_database_file_is_read_afresh(deployment, upstream, tmp_path):
    cite = upstream("Cite")
    deployment.sync()
    client = deployment.app().test_client()
    assert get_json(client, "/list/extensions") == {"extensions": ["Cite"]}
    database = deployment.settings().database
    for path in database.parent.glob(database.name + "*"):
        path.unlink()  # an operator restores or rebuilds the database
    cite.path.rename(tmp_path / "Cite-elsewhere")
    upstream("Echo")
    deployment.sync()
    assert get_json(client, "/list/extensions") == {"extensions": ["Echo"]}


def test_app_works_before_any_sync_ran(deployment, upstream):
    client = deployment.app().test_client()
    assert not deployment.settings().database.exists()
    assert get_json(client, "/list") == {"extensions": [], "skins": []}
    assert get_json(client, "/list/skins") == {"skins": []}
    assert get_json(client, "/info/extensions") == {"extensions": {}}
    assert get_json(client, "/status")["runs"] == []
    assert get_json(client, "/")["service"] == "tardist"
    assert get_json(client, "/info/extensions/Cite", 404)["error"]["status"] == 404
    assert get_json(client, "/download/extensions/Cite/master", 404)["error"]["status"] == 404
    assert get_json(client, "/list/apps", 404)["error"]["status"] == 404
    upstream("Cite")
    deployment.sync()
    assert get_json(client, "/list") == {"extensions": ["Cite"], "skins": []}  # the same app picks it up
    assert get_json(client, "/info/extensions/Cite")["branches"]["master"]


def test_app_opens_the_database_read_only(deployment, upstream):
    upstream("Cite")
    deployment.sync()
    database = deployment.settings().database
    before = hashlib.sha256(database.read_bytes()).hexdigest()
    app = deployment.app()
    client = app.test_client()
    for url in [*JSON_URLS, "/download/extensions/Cite/master"]:
        client.get(url)
    with app.app_context(), pytest.raises(sqlite3.OperationalError, match="readonly"):
        context.reader().answer("write", lambda conn: conn.execute("DELETE FROM repos"))
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before
    assert get_json(client, "/list") == {"extensions": ["Cite"], "skins": []}


def test_a_reader_sees_the_old_state_while_the_worker_holds_its_transaction(deployment, upstream):
    cite = upstream("Cite")
    git(cite.path, "branch", "REL1_45")
    deployment.sync()
    client = deployment.app().test_client()
    before = client.get("/info/extensions/Cite").data
    db = schema.open_writer(deployment.settings().database)
    with schema.write_transaction(db):
        store.save_repo(db, generation_record(1), InfoView.of(deployment.settings()))
        assert client.get("/info/extensions/Cite").data == before
        assert client.get("/info/extensions?names=Cite").get_json()["extensions"]["Cite"] == json.loads(before)
    after = client.get("/info/extensions/Cite").get_json()
    assert after["repository"] == "https://example.org/generation/1"
    assert {b["commit"] for b in after["branches"].values()} == {commit_of(1)}
    db.close()


def test_a_reader_never_sees_half_a_repository_while_the_worker_writes(deployment, upstream):
    upstream("Cite")
    deployment.sync()
    client = deployment.app().test_client()
    view = InfoView.of(deployment.settings())
    done = threading.Event()

    def write_generations() -> None:
        db = schema.open_writer(deployment.settings().database)  # the writer's own connection, as in the worker
        try:
            for generation in range(1, 150):
                store.save_repo(db, generation_record(generation), view)
        finally:
            db.close()
            done.set()

    writer = threading.Thread(target=write_generations)
    writer.start()
    seen = set()
    deadline = time.monotonic() + 60
    while (not done.is_set() or not seen) and time.monotonic() < deadline:
        for url in ("/info/extensions/Cite", "/info/extensions"):
            body = client.get(url).get_json()
            facts = body if "name" in body else body["extensions"]["Cite"]
            generation = (facts["repository"] or "").rsplit("/", 1)[-1]  # None: the synced directory repo
            if generation.isdigit():
                seen.add(int(generation))
                assert {b["commit"] for b in facts["branches"].values()} == {commit_of(int(generation))}
                assert list(facts["branches"]) == ["master", "REL1_45", "REL1_44"]
        time.sleep(0.001)  # let the writer thread have the GIL between its many short SQLite calls
    writer.join()
    assert len(seen) > 1


def commit_of(generation: int) -> str:
    """The synthetic commit id of a generation."""
    return f"{generation:040x}"


def generation_record(generation: int) -> RepoRecord:
    """Cite as a worker would record it, every field marked with the generation number."""
    commit = commit_of(generation)
    return RepoRecord("extensions", "Cite", f"https://example.org/generation/{generation}", branches=[
        BranchRecord(branch, commit, "built", committed_at="2026-01-01T10:00:00Z",
                     tarball=f"Cite-{branch}-{commit[:7]}.tar.gz", size=generation, sha256="0" * 64,
                     manifest={"name": "Cite", "version": str(generation)})
        for branch in ("REL1_44", "master", "REL1_45")])


@pytest.mark.slow
def test_an_unmigrated_database_is_a_503_until_init_db(deployment, upstream):
    upstream("Cite")
    database = deployment.settings().database
    deployment.sync()
    make_old_database(database, len(schema.MIGRATIONS) - 1)  # as the tardist before the last upgrade left it
    response = deployment.app().test_client().get("/list")
    assert response.status_code == 503
    assert "run `tardist init-db`" in response.get_json()["error"]["message"]
    assert deployment.cli("status").returncode == 2
    result = deployment.cli("init-db")
    assert result.returncode == 0, result.stderr
    deployment.sync()
    assert get_json(deployment.app().test_client(), "/list")["extensions"] == ["Cite"]


def test_init_db_waits_for_no_running_sync(deployment):
    with sync_lock(deployment.settings().lock_file):
        result = deployment.cli("init-db")
    assert result.returncode == 1 and "another tardist sync is running" in result.stderr
    assert deployment.cli("init-db").returncode == 0


@pytest.mark.parametrize("value, served", [("false", False), ("0", False), ("true", True), ("yes", True)])
def test_serve_tarballs_is_read_from_the_environment(deployment, upstream, monkeypatch, value, served):
    upstream("Cite")
    deployment.sync()
    monkeypatch.setenv("TARDIST_CONFIG", str(deployment.config))
    monkeypatch.setenv("TARDIST_SERVE_TARBALLS", value)
    client = create_app({"TESTING": True}).test_client()
    url = client.get("/info/extensions/Cite").get_json()["branches"]["master"]["url"]
    response = client.get(url)
    if served:
        assert response.status_code == 200 and response.mimetype == "application/gzip"
        assert hashlib.sha256(response.data).hexdigest() == \
            client.get("/info/extensions/Cite").get_json()["branches"]["master"]["sha256"]
    else:
        assert response.status_code == 404
        assert response.get_json()["error"]["status"] == 404
    response.close()
