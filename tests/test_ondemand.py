"""Build on demand and webhooks end to end: real nginx (deploy/nginx.conf), gunicorn and `tardist worker`."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import random
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import serving
from helpers import Deployment, Repo, Worker, directory_source, extension_files, git, git_shim, make_deployment

from loopback.gitdaemon import git_daemon, stop
from tardist.queue import HEADS, Queue
from worker.dispatcher import HEAD_THREADS

SECRET = "hook-secret"
HOST = "127.0.0.1"
needs_nginx = serving.needs_nginx  # on the tests through nginx only: the Flask-only ones run everywhere


def request(port: int, path: str, method: str = "GET", body: bytes | None = None, timeout: float = 90,
            **headers: str) -> serving.Answer:
    """One HTTP request to 127.0.0.1:port."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return serving.Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()



def patient_request(port: int, path: str, busy: list[serving.Answer]) -> serving.Answer:
    """A GET as a client that honours 503 + Retry-After does it (sooner than it says: this is a test);
    the 503 answers are added to busy."""
    while (answer := request(port, path)).status == 503:
        busy.append(answer)
        time.sleep(0.2)
    return answer


@dataclass
class Stack:
    """A deployment served by the worker, gunicorn and nginx; the worker's git commands logged."""

    deployment: Deployment
    port: int
    repos: dict[str, Repo]
    git_log: Path
    worker: Worker

    def git_commands(self) -> list[str]:
        """Every git command the worker has run so far."""
        return self.git_log.read_text().splitlines() if self.git_log.exists() else []

    def info(self, name: str) -> dict:
        """/info straight from the database (no cache in between)."""
        return json.loads(self.deployment.app().test_client().get(f"/info/extensions/{name}").data)


@contextlib.contextmanager
def serve(tmp: Path, sources: str, ready: str, **config) -> Iterator[Stack]:
    """A deployment of sources in tmp served by `tardist worker` (once it logs ready), gunicorn and nginx."""
    deployment = make_deployment(tmp, sources, **{"hook_secret": SECRET, "schedule": "0 0 1 1 *", "build_wait": 60,
                                                  **config})
    git_log = tmp / "git-commands.log"
    worker = Worker(deployment, tmp / "worker.log", env={"PATH": git_shim(tmp / "shim", git_log)})
    api_port, web_port = serving.free_port(), serving.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARDIST_")}
    gunicorn_log = tmp / "gunicorn.log"
    try:
        worker.wait_for(ready)
        with open(gunicorn_log, "wb") as log:
            gunicorn = subprocess.Popen(
                [serving.GUNICORN, "-c", "deploy/gunicorn.conf.py", "--bind", f"{HOST}:{api_port}", "--workers", "2",
                 "wsgi:app"], cwd=serving.ROOT, env={**env, "TARDIST_CONFIG": str(deployment.config)},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            serving.wait_until_serving(gunicorn, api_port, gunicorn_log)
            nginx_dir = tmp / "nginx"
            site = serving.render_site(serving.site_values(deployment, nginx_dir, web_port, api_port))
            # 50 clients at once, each also holding a connection to gunicorn
            with serving.running_nginx(nginx_dir, {"tardist.conf": site}, (web_port,), worker_connections=512):
                yield Stack(deployment, web_port, {}, git_log, worker)
        finally:
            stop(gunicorn)
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def stack(module_tmp, module_upstream):
    tmp = module_tmp
    repos = {}
    for name in ("Cite", "Echo", "Math", "Pushed", "Moved"):
        repos[name] = module_upstream(name)
    git(repos["Cite"].path, "branch", "REL1_45")
    with serve(tmp, directory_source("extensions", tmp / "upstream/extensions"), "sync finished") as served:
        served.repos.update(repos)
        yield served


@needs_nginx
@pytest.mark.nginx
def test_a_current_head_tarball_not_built_yet_is_built_and_served_through_nginx(stack):
    head = stack.repos["Cite"].commit({"NEWS": "on demand\n"})
    answer = request(stack.port, f"/dist/extensions/Cite-master-{head[:7]}.tar.gz")
    assert answer.status == 200, answer.body[:300]
    assert answer.headers["content-type"] == "application/gzip"
    assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    branch = stack.info("Cite")["branches"]["master"]
    assert branch["commit"] == head and hashlib.sha256(answer.body).hexdigest() == branch["sha256"]
    again = request(stack.port, f"/dist/extensions/Cite-master-{head[:7]}.tar.gz")
    assert again.status == 200 and again.body == answer.body


@needs_nginx
@pytest.mark.nginx
def test_fifty_concurrent_requests_for_one_missing_tarball_make_one_build(stack):
    head = stack.repos["Echo"].commit({"NEWS": "fifty\n"})
    path = f"/dist/extensions/Echo-master-{head[:7]}.tar.gz"
    before = len(stack.git_commands())
    busy: list[serving.Answer] = []
    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda _: patient_request(stack.port, path, busy), range(50)))
    assert [a.status for a in answers] == [200] * 50, {a.status: a.body[:200] for a in answers}
    assert len({a.body for a in answers}) == 1
    # build_waiters (4) per gunicorn process wait; the others are told at once to come back
    assert busy and all(a.headers["retry-after"] == "10" and "too many requests are waiting for builds"
                        in a.json()["error"]["message"] for a in busy)
    commands = stack.git_commands()[before:]
    assert len([c for c in commands if c.startswith("fetch") and "/Echo" in c]) == 1, commands
    assert len([c for c in commands if c.startswith("ls-remote") and "/Echo" in c]) <= 3, commands
    assert stack.worker.text().count("synced extensions/Echo: 1 built") == 1


@pytest.mark.slow
@needs_nginx
@pytest.mark.nginx
def test_a_flood_of_made_up_sha7s_costs_no_fetch_and_a_couple_of_ls_remote_per_repository(stack):
    upstream = stack.repos["Math"].path.parent
    names = [f"Flood{i:02d}" for i in range(50)]  # known to the directory source, never synced
    heads = {}
    for name in names:
        heads[name] = Repo(upstream / name).commit(extension_files(name))
    wanted = []
    for name in names:
        sha7s = {f"{random.getrandbits(28):07x}" for _ in range(20)} - {heads[name][:7]}
        wanted += [f"/dist/extensions/{name}-master-{sha7}.tar.gz" for sha7 in sha7s]
    random.shuffle(wanted)
    before = len(stack.git_commands())
    started = time.monotonic()
    busy: list[serving.Answer] = []
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda path: patient_request(stack.port, path, busy), wanted))
    seconds = time.monotonic() - started
    assert len(answers) > 950 and {a.status for a in answers} == {404}, {a.status: a.body for a in answers}
    assert all("too many requests are waiting" in a.json()["error"]["message"] for a in busy)
    assert all(a.json()["error"]["message"].endswith("is not the current head of extensions/"
                                                       f"{path.split('/')[3].split('-')[0]} master")
               for a, path in zip(answers, wanted))
    commands = stack.git_commands()[before:]
    assert not [c for c in commands if not c.startswith("ls-remote")], commands
    # the repository is the first path (options such as a directory source's --upload-pack come before it)
    per_repo = Counter(next(arg for arg in c.split()[1:] if arg.startswith("/")).rsplit("/", 1)[-1]
                       for c in commands)
    # Per 5 s (HEADS_TTL): one look, one fresh look that finds the heads unchanged, one more for the
    # requests that came while it was under way; then every made-up sha7 is a 404 from memory.
    windows = int(seconds // 5) + 1
    assert set(per_repo) == set(names) and max(per_repo.values()) <= 3 * windows, (per_repo, seconds)


@needs_nginx
@pytest.mark.nginx
def test_a_head_pushed_right_after_a_download_is_built_not_a_404(stack):
    pushed = stack.repos["Pushed"]
    before = len(stack.git_commands())
    for number in range(3):  # each push at once after the download of the one before
        head = pushed.commit({"NEWS": f"push {number}\n"})
        answer = request(stack.port, f"/dist/extensions/Pushed-master-{head[:7]}.tar.gz")
        assert answer.status == 200, answer.body[:300]
        assert stack.info("Pushed")["branches"]["master"]["commit"] == head
    looks = [c for c in stack.git_commands()[before:] if c.startswith("ls-remote") and "/Pushed" in c]
    assert len(looks) <= 3 * 3, looks  # the head check, one fresh look when it is stale, the sync's own


@needs_nginx
@pytest.mark.nginx
def test_a_branch_that_moves_before_the_build_says_so_and_names_the_new_file(stack):
    moved = stack.repos["Moved"]
    old = moved.commit({"NEWS": "old\n"})  # not built: nobody asked for it yet
    made_up = "0000000" if not old.startswith("0000000") else "1111111"
    assert request(stack.port, f"/dist/extensions/Moved-master-{made_up}.tar.gz").status == 404  # heads: old
    new = moved.commit({"NEWS": "new\n"})
    # Within HEADS_TTL the old head still looks current: the sync that should build it finds the new one.
    answer = request(stack.port, f"/dist/extensions/Moved-master-{old[:7]}.tar.gz")
    assert answer.status == 404, answer.body[:300]
    assert answer.json()["error"]["message"] == (f"{old[:7]} is no longer the head of extensions/Moved master: "
                                                 f"the branch moved to {new[:7]} (Moved-master-{new[:7]}.tar.gz)")
    assert stack.info("Moved")["branches"]["master"]["commit"] == new
    assert request(stack.port, f"/dist/extensions/Moved-master-{new[:7]}.tar.gz").status == 200


@needs_nginx
@pytest.mark.nginx
def test_names_that_cannot_be_a_current_head_are_404_without_any_git_command(stack):
    before = len(stack.git_commands())
    for path in ("/dist/extensions/Nope-master-1234567.tar.gz", "/dist/extensions/Cite-REL1_1-1234567.tar.gz",
                 "/dist/extensions/Cite-master-XYZ.tar.gz", "/dist/extensions/Cite.tar.gz",
                 "/dist/apps/Cite-master-1234567.tar.gz", "/dist/extensions/Cite-master-12345678.tar.gz"):
        answer = request(stack.port, path)
        assert answer.status == 404 and answer.json()["error"]["status"] == 404, path
        assert answer.headers["cache-control"] == "no-store"
    assert stack.git_commands()[before:] == []


@needs_nginx
@pytest.mark.nginx
def test_a_webhook_through_nginx_makes_the_push_downloadable(stack):
    head = stack.repos["Cite"].commit({"NEWS": "hooked\n"})
    hooked = request(stack.port, "/hooks/push", "POST", json.dumps({"kind": "extensions", "name": "Cite"}).encode(),
                     Authorization=f"Bearer {SECRET}")
    assert hooked.status == 202 and hooked.json() == {"queued": [{"kind": "extensions", "name": "Cite"}]}
    deadline = time.monotonic() + 60
    while request(stack.port, "/info/extensions/Cite").json()["branches"]["master"]["commit"] != head:
        assert time.monotonic() < deadline, "the push shows in /info through nginx's cache"
        time.sleep(0.2)
    url = request(stack.port, "/info/extensions/Cite").json()["branches"]["master"]["url"]
    assert request(stack.port, url).status == 200
    unsigned = request(stack.port, "/hooks/push", "POST", b'{"kind": "extensions", "name": "Cite"}')
    assert unsigned.status == 401 and unsigned.json()["error"]["status"] == 401


def test_without_a_worker_a_missing_tarball_is_404_at_once(deployment, upstream):
    head = upstream("Cite").head()
    deployment.write_config(build_wait=30)
    started = time.monotonic()
    response = deployment.app().test_client().get(f"/dist/extensions/Cite-master-{head[:7]}.tar.gz")
    assert response.status_code == 404 and "no tardist worker runs" in response.get_json()["error"]["message"]
    assert time.monotonic() - started < 5
    assert Queue(deployment.settings().queue_file).waiting() == []


def test_a_build_that_does_not_finish_within_build_wait_is_503_with_retry_after(deployment, upstream):
    head = upstream("Cite").head()
    deployment.write_config(build_wait=1)
    queue = Queue(deployment.settings().queue_file)
    with queue.worker_lock():  # a worker that is up but never gets to the request
        response = deployment.app().test_client().get(f"/dist/extensions/Cite-master-{head[:7]}.tar.gz")
    assert response.status_code == 503 and response.headers["Retry-After"] == "10"
    assert response.get_json()["error"]["status"] == 503
    assert [(r.action, r.name, r.reason) for r in queue.waiting()] == [("heads", "Cite", "build")]


def hook(port: int, kind: str, name: str) -> serving.Answer:
    """A signed push webhook for kind/name."""
    return request(port, "/hooks/push", "POST", json.dumps({"kind": kind, "name": name}).encode(),
                   Authorization=f"Bearer {SECRET}")


@pytest.mark.slow
@pytest.mark.nginx
def test_remotes_that_never_answer_hold_up_no_other_repository(tmp_path, hanging_remote):
    healthy = Repo(tmp_path / "served/extensions/Healthy")
    healthy.commit(extension_files("Healthy"))
    skins = ", ".join(f'S{i} = "{hanging_remote.url(f"S{i}")}"' for i in range(60))
    with git_daemon(tmp_path / "served") as base:
        sources = (f'\n[[source]]\nkind = "extensions"\ntype = "list"\n'
                   f'repos = {{ Healthy = "{base}/extensions/Healthy" }}\n'
                   f'\n[[source]]\nkind = "skins"\ntype = "list"\nrepos = {{ {skins} }}\n')
        # The worker's own full sync is stuck on the silent skins too, beside all of this.
        with serve(tmp_path / "stack", sources, "worker ready", jobs=2, build_wait=15, heads_timeout=60,
                   git_timeout=120) as stack:
            try:
                queue = Queue(stack.deployment.settings().queue_file)
                # What many web processes ask for silent repositories: the worker takes half its head threads.
                asked = [queue.request(HEADS, "skins", f"S{i}", reason="build") for i in range(12)]
                for i in range(4):
                    assert hook(stack.port, "skins", f"S{i}").status == 202
                with ThreadPoolExecutor(60) as pool:
                    held = [pool.submit(request, stack.port, f"/dist/skins/S{i}-master-1234567.tar.gz")
                            for i in range(60)]
                    deadline = time.monotonic() + 10
                    while sum(queue.get(i).started_at is not None for i in asked) < HEAD_THREADS // 2:
                        assert time.monotonic() < deadline, "the worker took requests for the silent skins"
                        time.sleep(0.1)

                    head = healthy.commit({"NEWS": "on demand\n"})
                    started = time.monotonic()
                    answer = request(stack.port, f"/dist/extensions/Healthy-master-{head[:7]}.tar.gz")
                    assert answer.status == 200, answer.body[:300]
                    assert time.monotonic() - started < 10

                    head = healthy.commit({"NEWS": "hooked\n"})
                    assert hook(stack.port, "extensions", "Healthy").status == 202
                    deadline = time.monotonic() + 10
                    while stack.info("Healthy")["branches"]["master"]["commit"] != head:
                        assert time.monotonic() < deadline, "the webhook's sync ran beside the silent ones"
                        time.sleep(0.1)

                    for _ in range(10):  # gunicorn keeps threads for the API while build waits are held
                        started = time.monotonic()
                        assert request(stack.port, "/status").status == 200
                        assert time.monotonic() - started < 1
                    assert sum(not f.done() for f in held) >= 2, "build waits for silent remotes are held"
                    answers = [f.result() for f in held]
                assert {a.status for a in answers} == {503}
                assert all(a.headers["retry-after"] == "10" for a in answers)
            finally:
                hanging_remote.close()  # the worker then stops at once
