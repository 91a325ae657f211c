"""/gerrit/projects/...: read exactly as ExtensionDistributor's GerritExtDistProvider reads Gerrit."""

from __future__ import annotations

import json

import pytest
from helpers import populate


def extdist_decode(body: bytes):
    """What GerritExtDistProvider does with an answer: drop the first 4 characters, decode the JSON."""
    return json.loads(body.decode()[4:])


def extdist_branches(body: bytes) -> dict[str, str]:
    """GerritExtDistProvider's branch list: refs/heads/ entries only, branch name -> commit."""
    return {entry["ref"][len("refs/heads/"):]: entry["revision"]
            for entry in extdist_decode(body) if entry["ref"].startswith("refs/heads/")}


def extdist_tarball(kind: str, name: str, branch: str, commit: str) -> str:
    """The tarballUrl ExtensionDistributor makes: $TYPE/$EXT-$REF-$SHA with a 7-digit sha."""
    return f"/dist/{kind}/{name}-{branch}-{commit[:7]}.tar.gz"


@pytest.fixture
def client(deployment, upstream, tmp_path):
    populate(deployment, upstream, tmp_path)
    return deployment.app().test_client()


def test_project_list_names_every_repository_of_the_kind_with_a_tarball(client):
    answer = client.get("/gerrit/projects/?b=master&p=mediawiki/extensions/")
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    assert answer.data.startswith(b")]}'\n")
    projects = extdist_decode(answer.data)
    # Broken has a tarball for REL1_45 only; Gone (apps) has none and is not an extension anyway
    assert list(projects) == [f"mediawiki/extensions/{name}" for name in
                              ("BadManifest", "Broken", "Cite", "Links", "NoManifest")]
    assert projects["mediawiki/extensions/Cite"] == {"id": "mediawiki%2Fextensions%2FCite", "state": "ACTIVE"}
    skins = extdist_decode(client.get("/gerrit/projects/?p=mediawiki/skins/").data)
    assert list(skins) == ["mediawiki/skins/Vector"]
    assert extdist_decode(client.get("/gerrit/projects/?p=mediawiki/apps/").data) == {}
    assert list(extdist_decode(client.get("/gerrit/projects/?p=mediawiki/extensions/C").data)) == [
        "mediawiki/extensions/Cite"]
    assert len(extdist_decode(client.get("/gerrit/projects/").data)) == 6


def test_every_link_extdist_builds_names_a_tarball_that_exists(client):
    projects = extdist_decode(client.get("/gerrit/projects/?b=master&p=mediawiki/extensions/").data)
    links = 0
    for project, facts in projects.items():
        answer = client.get(f"/gerrit/projects/{facts['id']}/branches")
        assert answer.status_code == 200 and answer.mimetype == "application/json", project
        kind, name = project.split("/")[1:]
        info = client.get(f"/info/{kind}/{name}").get_json()
        heads = extdist_branches(answer.data)
        assert heads == {branch: facts["commit"] for branch, facts in info["branches"].items()}
        for branch, commit in heads.items():
            with client.get(extdist_tarball(kind, name, branch, commit)) as tarball:
                assert tarball.status_code == 200, (project, branch)
            links += 1
    assert links == 6  # Cite: master and REL1_45; Broken: REL1_45; Links, BadManifest, NoManifest: master
    broken = client.get("/gerrit/projects/mediawiki%2Fextensions%2FBroken/branches").data
    assert list(extdist_branches(broken)) == ["REL1_45"], "the failed master has no tarball, so it is not offered"
    assert [entry["ref"] for entry in extdist_decode(broken)] == ["refs/heads/REL1_45"]
    cite = extdist_decode(client.get("/gerrit/projects/mediawiki%2Fextensions%2FCite/branches").data)
    assert [entry["ref"] for entry in cite] == ["HEAD", "refs/heads/master", "refs/heads/REL1_45"]
    assert cite[0]["revision"] == "master"  # as Gerrit says it; ExtensionDistributor skips it


def test_branch_answers_are_cached_like_the_api(client):
    first = client.get("/gerrit/projects/mediawiki%2Fextensions%2FCite/branches")
    assert first.headers["Cache-Control"].startswith("public, max-age=") and first.headers["ETag"]
    again = client.get("/gerrit/projects/mediawiki%2Fextensions%2FCite/branches",
                       headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""


@pytest.mark.parametrize("path", [
    "/gerrit/projects/mediawiki%2Fextensions%2FNope/branches",
    "/gerrit/projects/mediawiki%2Fapps%2FGone/branches",  # listed, but nothing was ever built
    "/gerrit/projects/mediawiki%2Fextensions/branches",
    "/gerrit/projects/mediawiki%2Fextensions%2FCite%2Fextra/branches",
    "/gerrit/projects/other%2Fextensions%2FCite/branches",
    "/gerrit/projects/mediawiki%2FExtensions%2FCite/branches",
    "/gerrit/projects/mediawiki%2Fextensions%2F..%2F..%2Fetc/branches",
    "/gerrit/projects/mediawiki%2Fextensions%2F.git/branches",
    "/gerrit/projects/mediawiki%2Fextensions%2FCite/tags",
])
def test_unknown_projects_get_the_json_404(client, path):
    answer = client.get(path)
    assert answer.status_code == 404 and answer.get_json()["error"]["status"] == 404
    assert answer.headers["Cache-Control"] == "no-store"


def test_bad_listing_queries_get_the_json_400(client):
    for query in ("colour=blue", f"p={'x' * 201}"):
        answer = client.get(f"/gerrit/projects/?{query}")
        assert answer.status_code == 400 and answer.get_json()["error"]["status"] == 400


def test_answers_before_any_sync(deployment):
    client = deployment.app().test_client()
    assert extdist_decode(client.get("/gerrit/projects/?p=mediawiki/extensions/").data) == {}
    assert client.get("/gerrit/projects/mediawiki%2Fextensions%2FCite/branches").status_code == 404
