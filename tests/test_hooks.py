"""POST /hooks/push: every flavour with a good and a bad signature, and every documented answer."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json

import pytest
import serving
from helpers import directory_source

from loopback.gitdaemon import stop
from tardist.queue import Queue
from tardist.settings import load_settings

SECRET = "s3cret-hook"
GERRIT = "https://gerrit.example.org/r"


@pytest.fixture
def app(deployment, upstream, tmp_path):
    """Cite in a directory source (synced), Vector in a list source, Math in a synced Gerrit-style list."""
    upstream("Cite")
    deployment.write_config(
        directory_source("extensions", tmp_path / "upstream/extensions")
        + f'\n[[source]]\nkind = "skins"\ntype = "list"\nrepos = {{ Vector = "{GERRIT}/mediawiki/skins/Vector" }}\n',
        hook_secret=SECRET)
    deployment.sync(check=False)
    return deployment.app()


def queued(deployment) -> list[tuple[str, str, str, str]]:
    conn = Queue(deployment.settings().queue_file)
    return [(r.action, r.kind, r.name, r.reason) for r in conn.waiting()]


def github_push(url: str, ref: str = "refs/heads/master") -> bytes:
    return json.dumps({"ref": ref, "before": "0" * 40, "after": "1" * 40,
                       "repository": {"full_name": "wikimedia/x", "clone_url": url, "html_url": url}}).encode()


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("event_header", ["X-GitHub-Event", "X-Gitea-Event", "X-Forgejo-Event"])
def test_github_gitea_forgejo_push_with_a_good_signature_is_queued(app, deployment, event_header):
    body = github_push(f"{GERRIT}/mediawiki/skins/Vector.git")
    response = app.test_client().post("/hooks/push", data=body, content_type="application/json",
                                      headers={"X-Hub-Signature-256": sign(body), event_header: "push"})
    assert response.status_code == 202, response.get_json()
    assert response.get_json() == {"queued": [{"kind": "skins", "name": "Vector"}]}
    assert queued(deployment) == [("sync", "skins", "Vector", "hook")]


@pytest.mark.parametrize("signature", [None, "sha256=" + "0" * 64, "sha1=abc", "", "sha256="])
def test_github_push_with_a_bad_or_missing_signature_is_401(app, deployment, signature):
    body = github_push(f"{GERRIT}/mediawiki/skins/Vector")
    headers = {"X-GitHub-Event": "push"} | ({"X-Hub-Signature-256": signature} if signature is not None else {})
    response = app.test_client().post("/hooks/push", data=body, content_type="application/json", headers=headers)
    assert response.status_code == 401 and response.get_json()["error"]["status"] == 401
    assert queued(deployment) == []


def test_a_signature_made_with_another_secret_or_over_another_body_is_401(app, deployment):
    body = github_push(f"{GERRIT}/mediawiki/skins/Vector")
    client = app.test_client()
    for signature in (sign(body, "other"), sign(body + b" ")):
        response = client.post("/hooks/push", data=body, headers={"X-Hub-Signature-256": signature})
        assert response.status_code == 401
    assert queued(deployment) == []


def test_gitlab_push_with_the_token_is_queued_and_a_wrong_token_is_401(app, deployment, tmp_path):
    path = str(tmp_path / "upstream/extensions/Cite")
    body = json.dumps({"object_kind": "push", "event_name": "push", "ref": "refs/heads/master",
                       "project": {"path_with_namespace": "x/Cite", "git_http_url": path}}).encode()
    client = app.test_client()
    bad = client.post("/hooks/push", data=body, headers={"X-Gitlab-Token": "wrong", "X-Gitlab-Event": "Push Hook"})
    assert bad.status_code == 401 and queued(deployment) == []
    good = client.post("/hooks/push", data=body, headers={"X-Gitlab-Token": SECRET, "X-Gitlab-Event": "Push Hook"})
    assert good.status_code == 202 and good.get_json() == {"queued": [{"kind": "extensions", "name": "Cite"}]}
    assert queued(deployment) == [("sync", "extensions", "Cite", "hook")]


def gerrit_event(project: str, ref: str = "refs/heads/master") -> bytes:
    return json.dumps({"type": "ref-updated", "submitter": {"name": "Ada"}, "eventCreatedOn": 1764000000,
                       "refUpdate": {"oldRev": "0" * 40, "newRev": "1" * 40, "refName": ref,
                                     "project": project}}).encode()


def test_gerrit_ref_updated_with_the_bearer_token_is_queued_and_a_wrong_one_is_401(app, deployment):
    client = app.test_client()
    body = gerrit_event("mediawiki/extensions/Cite")
    bad = client.post("/hooks/push", data=body, headers={"Authorization": f"Bearer {SECRET}x"})
    assert bad.status_code == 401 and queued(deployment) == []
    good = client.post("/hooks/push", data=body, headers={"Authorization": f"Bearer {SECRET}"})
    assert good.status_code == 202 and good.get_json() == {"queued": [{"kind": "extensions", "name": "Cite"}]}
    assert queued(deployment) == [("sync", "extensions", "Cite", "hook")]


def test_tardist_own_hook_with_the_bearer_token_is_queued_and_a_wrong_one_is_401(app, deployment):
    client = app.test_client()
    body = json.dumps({"kind": "skins", "name": "Vector"})
    assert client.post("/hooks/push", data=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.post("/hooks/push", data=body, headers={"Authorization": "Basic " + SECRET}).status_code == 401
    assert queued(deployment) == []
    good = client.post("/hooks/push", data=body, headers={"Authorization": f"Bearer {SECRET}"})
    assert good.status_code == 202 and good.get_json() == {"queued": [{"kind": "skins", "name": "Vector"}]}


def test_many_hooks_for_one_repository_make_one_waiting_request(app, deployment):
    client = app.test_client()
    for _ in range(20):
        response = client.post("/hooks/push", data=gerrit_event("mediawiki/extensions/Cite"),
                               headers={"Authorization": f"Bearer {SECRET}"})
        assert response.status_code == 202
    assert queued(deployment) == [("sync", "extensions", "Cite", "hook")]


def test_pushes_to_other_branches_and_tags_are_acknowledged_and_ignored(app, deployment):
    client = app.test_client()
    bearer = {"Authorization": f"Bearer {SECRET}"}
    for ref in ("refs/heads/wmf/1.46.0-wmf.3", "refs/changes/45/12345/2", "refs/meta/config", "refs/tags/REL1_45"):
        response = client.post("/hooks/push", data=gerrit_event("mediawiki/extensions/Cite", ref), headers=bearer)
        assert response.status_code == 200 and response.get_json() == {"queued": []}, ref
    body = github_push(f"{GERRIT}/mediawiki/skins/Vector", ref="refs/tags/1.0")
    response = client.post("/hooks/push", data=body, headers={"X-Hub-Signature-256": sign(body)})
    assert response.status_code == 200 and response.get_json() == {"queued": []}
    tag = json.dumps({"object_kind": "tag_push", "ref": "refs/tags/v1", "project": {"git_http_url": "x"}})
    response = client.post("/hooks/push", data=tag, headers={"X-Gitlab-Token": SECRET})
    assert response.status_code == 200 and response.get_json() == {"queued": []}
    ping = b'{"zen": "Keep it logically awesome.", "hook_id": 1}'
    response = client.post("/hooks/push", data=ping, headers={"X-Hub-Signature-256": sign(ping),
                                                              "X-GitHub-Event": "ping"})
    assert response.status_code == 200 and response.get_json() == {"queued": []}
    assert queued(deployment) == []


def test_unknown_repositories_are_404(app, deployment):
    client = app.test_client()
    bearer = {"Authorization": f"Bearer {SECRET}"}
    for body in (gerrit_event("mediawiki/extensions/Nope"), gerrit_event("mediawiki/apps/Cite"),
                 json.dumps({"kind": "extensions", "name": "../etc"}).encode(),
                 json.dumps({"kind": "skins", "name": "Cite"}).encode()):
        response = client.post("/hooks/push", data=body, headers=bearer)
        assert response.status_code == 404 and response.get_json()["error"]["status"] == 404, body
    body = github_push("https://github.com/someone/Nope.git")
    assert client.post("/hooks/push", data=body, headers={"X-Hub-Signature-256": sign(body)}).status_code == 404
    assert queued(deployment) == []


def test_bodies_that_are_not_push_events_are_400(app):
    client = app.test_client()
    bearer = {"Authorization": f"Bearer {SECRET}"}
    gitlab_issue = json.dumps({"object_kind": "issue", "project": {"git_http_url": "x"}})
    response = client.post("/hooks/push", data=gitlab_issue, headers={"X-Gitlab-Token": SECRET})
    assert response.status_code == 400
    for body in (b"not json", b"[1, 2]", b'{"kind": 5}', b'{"type": "comment-added", "refUpdate": {}}',
                 b'{"refUpdate": {"refName": "refs/heads/master"}}', b"\xff\xfe"):
        response = client.post("/hooks/push", data=body, headers=bearer)
        assert response.status_code == 400 and response.get_json()["error"]["status"] == 400, body
    issue = b'{"action": "opened"}'
    response = client.post("/hooks/push", data=issue, headers={"X-Hub-Signature-256": sign(issue),
                                                               "X-GitHub-Event": "issues"})
    assert response.status_code == 400


def test_bodies_over_one_mib_are_413(app):
    body = b'{"kind": "extensions", "name": "Cite", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    response = app.test_client().post("/hooks/push", data=body, headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status_code == 413 and response.get_json()["error"]["status"] == 413


def test_a_signed_body_nested_200000_deep_is_400_not_500(app, deployment):
    client = app.test_client()
    for body in (b"[" * 200_000 + b"]" * 200_000, b'{"":' * 200_000 + b"1" + b"}" * 200_000):
        for headers in ({"X-Hub-Signature-256": sign(body), "X-GitHub-Event": "push"}, {"X-Gitlab-Token": SECRET},
                        {"Authorization": f"Bearer {SECRET}"}):
            response = client.post("/hooks/push", data=body, headers=headers)
            assert response.status_code == 400, (headers, response.get_json())
            assert response.get_json()["error"] == {"status": 400, "message": "the body is nested too deeply"}
    assert queued(deployment) == []


@pytest.mark.nginx
def test_a_chunked_body_over_one_mib_is_413_through_gunicorn(deployment, upstream):
    """The Flask test client always sends a length; gunicorn passes a chunked body as a stream of unknown length."""
    upstream("Cite")
    deployment.write_config(hook_secret=SECRET)
    deployment.sync()
    port = serving.free_port()
    server = serving.start_gunicorn(deployment, port, deployment.root / "gunicorn.log")
    try:
        def post_chunked(body: bytes) -> tuple[int, dict]:
            conn = http.client.HTTPConnection(serving.HOST, port, timeout=30)
            try:
                chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
                conn.request("POST", "/hooks/push", body=chunks, encode_chunked=True,
                             headers={"Authorization": f"Bearer {SECRET}", "Transfer-Encoding": "chunked"})
                response = conn.getresponse()
                return response.status, json.loads(response.read())
            finally:
                conn.close()

        own = b'{"kind": "extensions", "name": "Cite", "pad": "'
        for size in (1024 * 1024 + 1, 1024 * 1024 + 100, 3 * 1024 * 1024):
            status, answer = post_chunked(own + b"x" * (size - len(own) - 2) + b'"}')
            assert (status, answer["error"]["status"]) == (413, 413), (size, answer)
        status, answer = post_chunked(own + b"x" * (1024 * 1024 - len(own) - 2) + b'"}')  # exactly 1 MiB
        assert (status, answer) == (202, {"queued": [{"kind": "extensions", "name": "Cite"}]})
    finally:
        stop(server)


def test_an_empty_or_partial_bearer_token_is_401(app, deployment):
    client = app.test_client()
    body = json.dumps({"kind": "skins", "name": "Vector"})
    for token in ("", " ", SECRET[:1], SECRET[:-1], SECRET.upper()):
        response = client.post("/hooks/push", data=body, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, repr(token)
    for token in ("", SECRET[:-1]):
        response = client.post("/hooks/push", data=body, headers={"X-Gitlab-Token": token})
        assert response.status_code == 401, repr(token)
    assert queued(deployment) == []


def test_only_a_branch_tardist_builds_is_queued_not_a_tag_or_a_branch_ending_in_its_name(app, deployment):
    client = app.test_client()
    url = f"{GERRIT}/mediawiki/skins/Vector"
    for ref in ("refs/tags/REL1_45", "refs/tags/master", "refs/heads/x/master", "refs/heads/wmf/REL1_45",
                "refs/remotes/origin/master", "master"):
        body = github_push(url, ref=ref)
        response = client.post("/hooks/push", data=body, headers={"X-Hub-Signature-256": sign(body)})
        assert response.status_code == 200 and response.get_json() == {"queued": []}, ref
        gitlab = json.dumps({"object_kind": "push", "ref": ref, "project": {"git_http_url": url}})
        response = client.post("/hooks/push", data=gitlab, headers={"X-Gitlab-Token": SECRET})
        assert response.status_code == 200 and response.get_json() == {"queued": []}, ref
    assert queued(deployment) == []
    body = github_push(url, ref="refs/heads/REL1_45")
    assert client.post("/hooks/push", data=body, headers={"X-Hub-Signature-256": sign(body)}).status_code == 202


@pytest.mark.parametrize("ref", ["master", "REL1_45"])
def test_an_older_gerrits_short_branch_name_is_queued(app, deployment, ref):
    response = app.test_client().post("/hooks/push", data=gerrit_event("mediawiki/extensions/Cite", ref),
                                      headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status_code == 202, response.get_json()
    assert queued(deployment) == [("sync", "extensions", "Cite", "hook")]


def test_without_hook_secret_webhooks_are_not_enabled(deployment, upstream):
    upstream("Cite")
    deployment.write_config()
    response = deployment.app().test_client().post(
        "/hooks/push", data=b'{"kind": "extensions", "name": "Cite"}', headers={"Authorization": "Bearer "})
    assert response.status_code == 404
    assert response.get_json() == {"error": {"status": 404, "message": "webhooks are not enabled"}}


def test_hook_secret_can_come_from_the_environment(deployment, monkeypatch):
    monkeypatch.setenv("TARDIST_HOOK_SECRET", "from-env")
    assert deployment.settings().hook_secret == ""  # deployment.settings() ignores the environment on purpose
    assert load_settings(deployment.config).hook_secret == "from-env"
