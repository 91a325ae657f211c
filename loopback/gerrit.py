"""A Gerrit-shaped project listing on loopback: `GET /r/projects/?p=&b=&S=&n=` as Gerrit's REST API answers it.

Shared by the tests and the benchmarks. The answer is a JSON map of project name to
ProjectInfo after the `)]}'` line; with `b=` (repeatable) each ProjectInfo has
`branches` with the sha1 of each asked branch the project has, and projects that have
none of them are left out, as Gerrit does. With `page_size`, the listing is paged as a
Gerrit with a result limit pages it: the last project of a page that is not the last
says `"_more_projects": true`, and `S=` skips that many projects.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"


class FakeGerrit:
    """The listing of `projects()` ({project: {branch: sha1}}, asked for on every request) at `base`."""

    def __init__(self, projects: Callable[[], dict[str, dict[str, str]]], page_size: int | None = None,
                 honour_b: bool = True) -> None:
        self.projects = projects
        self.page_size = page_size
        self.honour_b = honour_b
        self.asked: list[str] = []
        self.server = ThreadingHTTPServer((HOST, 0), self._handler())
        self.base = f"http://{HOST}:{self.server.server_port}/r"
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-gerrit", daemon=True)
        self.thread.start()

    def answer(self, query: str) -> dict:
        """The ProjectInfo map one request with this query string gets."""
        args = parse_qs(query)
        prefix = args.get("p", [""])[0]
        wanted = args.get("b", []) if self.honour_b else []
        skip = int(args.get("S", ["0"])[0])
        limit = min(filter(None, [self.page_size, int(args.get("n", ["0"])[0])]), default=None)
        listed = []
        for name, heads in sorted(self.projects().items()):
            if not name.startswith(prefix):
                continue
            info: dict = {"id": name.replace("/", "%2F"), "state": "ACTIVE"}
            if wanted:
                branches = {branch: heads[branch] for branch in wanted if branch in heads}
                if not branches:
                    continue
                info["branches"] = branches
            listed.append((name, info))
        page = listed[skip:skip + limit] if limit else listed[skip:]
        if limit and skip + limit < len(listed):
            page[-1][1]["_more_projects"] = True
        return dict(page)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        gerrit = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                gerrit.asked.append(self.path)
                if url.path != "/r/projects/":
                    self.send_error(404)
                    return
                data = (")]}'\n" + json.dumps(gerrit.answer(url.query))).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
