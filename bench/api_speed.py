"""Issue 3 benchmark: the API served by gunicorn and nginx, against trivial baselines in the same run.

    python bench/api_speed.py [--repos 2000] [--seconds 10]

Fills a database with synthetic repositories (5 branches each, realistic
manifests) through tardist.store.save_repo, then measures with wrk
(-t2 -c16, a short warm-up first, then --seconds per target):

  a) gunicorn (2 workers, deploy/gunicorn.conf.py): /info/extensions/<name>,
     the name rotating at random through every repository (lua script),
     vs bench/trivial_app.py answering a constant body of the same size.
  b) nginx with deploy/nginx.conf in front of (a), same rotating names,
     vs the same nginx serving a file of that size; and the same site with
     its proxy cache off (what tardist itself gives behind nginx).
  c) /info/extensions (every repository) straight from gunicorn: cold (each
     request follows a database write, so it is computed again) and warm.
  d) the static API: the same rotating /info/extensions/<name> served from
     published/ by nginx with deploy/nginx.conf, vs a static file of the same
     size on the same nginx (each request made by lua, as the rotation is) and
     vs one plain file of that size per repository in the same rotation, and
     by nginx with deploy/nginx-static.conf (an edge server); compared with (a).
  e) publishing: how long worker.publish takes after a no-op sync (every
     repository recorded again, nothing built), after a sync that changed 10%,
     after --only syncs of 10% and of one repository, and with nothing changed.
  f) the HTML page /browse/extensions/<name> beside /info/extensions/<name>,
     both through gunicorn, names rotating through the same 200 repositories
     (people's page views gather on fewer repositories than MediaWiki's /info
     lookups; a page costs about 1.5 ms to render once per worker and data
     change, then it is a cached string like /info).

Prints a table and writes bench/results/api_speed.json.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from report import write_results

from tardist import schema, store
from tardist.info import InfoView
from tardist.records import BranchRecord, RepoRecord
from tardist.settings import load_settings
from worker.publish import publish

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: loopback/ is shared with tests/
from loopback.gitdaemon import free_port, stop  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HOST = "127.0.0.1"
PAGE_NAMES = 200  # repositories whose pages (d) are asked for
BRANCHES = ["master", "REL1_45", "REL1_44", "REL1_43", "REL1_39"]
VIEW = InfoView(tuple(BRANCHES), "/dist")  # what the benchmark's tardist.toml configures
GOALS = {"a_rps_ratio": (">=", 0.60), "a_p99_ms": ("<", 25.0), "b_rps_ratio": (">=", 0.50),
         "c_cold_ms": ("<", 150.0), "d_vs_static_file": (">=", 0.90), "d_vs_static_files": (">=", 0.90),
         "d_vs_gunicorn": (">=", 10.0),
         "e_noop_sync_s": ("<", 1.0), "f_browse_ratio": (">=", 0.70)}
# wrk calls done() once at the end; print the numbers as one JSON line for us to parse.
WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "seconds": %.3f, "errors": %d, '
    .. '"p50_ms": %.3f, "p99_ms": %.3f, "mean_ms": %.3f}\\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.mean / 1000))
end
"""
WRK_ROTATE = """
local names = {%s}
local counter = 0
setup = function(thread) thread:set("id", counter); counter = counter + 1 end
init = function(args) math.randomseed(7919 * (id + 1)) end
request = function() return wrk.format("GET", "%s" .. names[math.random(#names)]) end
"""
WORDS = ["Cite", "Echo", "Math", "Gadget", "Poem", "Score", "Thanks", "Flow", "Babel", "Nuke", "Renameuser",
         "Widget", "Tabber", "Graph", "Maps", "Chart", "Quiz", "Vote", "Calendar", "Timeline"]
TYPES = ["specialpage", "parserhook", "media", "api", "other", "antispam", "editor", "variable"]


def synthetic_record(index: int, rng: random.Random, name: str | None = None) -> RepoRecord:
    """A repository as the worker would record it: 5 built branches with realistic manifests."""
    name = name or f"{rng.choice(WORDS)}{rng.choice(WORDS)}{index}"
    authors = rng.sample(["Ada Lovelace", "Grace Hopper", "Brion Vibber", "Tim Starling", "Alan Turing",
                          "Katherine Johnson", "Edsger Dijkstra"], rng.randint(1, 4))
    branches = []
    for position, branch in enumerate(BRANCHES):
        commit = f"{rng.getrandbits(160):040x}"
        requires = {"MediaWiki": f">= 1.{45 - position}.0"}
        if rng.random() < 0.3:
            requires["extensions"] = {rng.choice(WORDS): "*"}
        manifest = {"name": name, "description": f"Adds {rng.choice(TYPES)} features to wikis: "
                                                 + " ".join(rng.choices(WORDS, k=rng.randint(5, 15))).lower(),
                    "license": "GPL-2.0-or-later", "url": f"https://www.mediawiki.org/wiki/Extension:{name}",
                    "authors": authors, "type": rng.choice(TYPES), "version": f"{rng.randint(0, 5)}.{position}.0",
                    "requires": requires}
        branches.append(BranchRecord(
            branch, commit, "built", committed_at=f"2026-{rng.randint(1, 11):02d}-{rng.randint(1, 28):02d}T10:00:00Z",
            tarball=f"{name}-{branch}-{commit[:7]}.tar.gz", size=rng.randint(20_000, 5_000_000),
            sha256=f"{rng.getrandbits(256):064x}", manifest=manifest))
    return RepoRecord("extensions", name, f"https://gerrit.example.org/r/mediawiki/extensions/{name}", branches)


def fill_database(path: Path, repos: int) -> list[str]:
    """Write `repos` synthetic repositories, one transaction each as the worker does; return their names."""
    rng = random.Random(0)
    db = schema.open_writer(path)
    names = []
    for index in range(repos):
        record = synthetic_record(index, rng)
        store.save_repo(db, record, VIEW)
        names.append(record.name)
    db.close()
    return names


def touch_database(path: Path, name: str) -> None:
    """Record one repository again, as a sync would: every cached answer becomes stale."""
    db = schema.open_writer(path)
    store.save_repo(db, RepoRecord("extensions", name, f"https://gerrit.example.org/r/{name}"), VIEW)
    db.close()


def get(port: int, path: str) -> tuple[int, bytes]:
    """GET path from 127.0.0.1:port; (status, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@contextmanager
def server(args: list[str], port: int, log: Path, **popen):
    """Run a server process until the block ends; wait until it answers HTTP on port first."""
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, **popen)
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{args[0]} exited:\n{log.read_text()}")
            try:
                get(port, "/")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{args[0]} does not answer on {port}:\n{log.read_text()}") from None
                time.sleep(0.1)
        yield process
    finally:
        stop(process)


def gunicorn(app: str, port: int, work: Path, label: str, **env: str):
    """gunicorn with the shipped settings and 2 workers (context manager)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TARDIST_")}
    return server([GUNICORN, "-c", str(ROOT / "deploy/gunicorn.conf.py"), "--bind", f"{HOST}:{port}",
                   "--workers", "2", app], port, work / f"{label}.log", cwd=ROOT, env={**base, **env})


def render(site: str, values: dict[str, str]) -> str:
    """A site of deploy/ with its placeholders filled in; ACCESS_LOG "off" turns its access log off."""
    text = (ROOT / "deploy" / site).read_text()
    if values.get("ACCESS_LOG") == "off":
        text = text.replace("access_log @ACCESS_LOG@ tardist;", "access_log off;")
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def nginx_config(work: Path, label: str, sites: list[str], static_port: int | None = None) -> Path:
    """An nginx main config under work/label around sites (and a plain static server on static_port)."""
    home = work / label
    home.mkdir()
    temp_paths = "".join(f"    {kind}_temp_path {home / kind};\n"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    includes = ""
    for number, site in enumerate(sites):
        (home / f"site{number}.conf").write_text(site)
        includes += f"    include {home / f'site{number}.conf'};\n"
    static = f"""    server {{
        listen {HOST}:{static_port};
        root {work / 'static'};
        default_type application/json;
    }}
""" if static_port else ""
    main = home / "nginx.conf"
    main.write_text(f"""daemon off;
{"user root;" if os.geteuid() == 0 else ""}
worker_processes auto;
pid {home / 'nginx.pid'};
error_log {home / 'error.log'};
events {{ worker_connections 256; }}
http {{
    access_log off;
{temp_paths}{includes}{static}}}
""")
    return main


def nginx(main: Path, port: int):
    """nginx with the given main config (context manager)."""
    home = main.parent
    return server([NGINX, "-p", str(home), "-c", str(main), "-e", str(home / "error.log")], port, home / "out.log")


def wrk(port: int, path: str, script: str, seconds: int) -> dict:
    """Run wrk -t2 -c16 for `seconds`; its numbers."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script + WRK_DONE)
        lua.flush()
        output = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "--timeout", "5s", "-s", lua.name,
                                 f"http://{HOST}:{port}{path}"], capture_output=True, text=True, check=True).stdout
    numbers = json.loads(output.strip().splitlines()[-1])
    numbers["rps"] = round(numbers["requests"] / numbers["seconds"], 1)
    return numbers


def side_by_side(subject: tuple[int, str, str], baseline: tuple[int, str, str], seconds: int,
                 rounds: int = 1) -> tuple[dict, dict]:
    """Warm both (port, path, lua script) up, then measure them in turn; with rounds > 1, the
    round with the median req/s of each (the machine's noise hits both alike)."""
    wrk(*subject, 3)
    wrk(*baseline, 3)
    runs = [(wrk(*subject, seconds), wrk(*baseline, seconds)) for _ in range(rounds)]
    middle = rounds // 2
    return (sorted((run[0] for run in runs), key=lambda r: r["rps"])[middle],
            sorted((run[1] for run in runs), key=lambda r: r["rps"])[middle])


def cold_and_warm_all(port: int, database: Path, names: list[str], rounds: int = 7) -> dict:
    """Milliseconds for GET /info/extensions: each cold one right after a write, then warm ones."""
    cold = []
    for index in range(rounds):
        touch_database(database, names[index])
        started = time.perf_counter()
        status, body = get(port, "/info/extensions")
        cold.append((time.perf_counter() - started) * 1000)
        assert status == 200 and len(json.loads(body)["extensions"]) == len(names)
    warm = []
    for _ in range(rounds):
        started = time.perf_counter()
        get(port, "/info/extensions")
        warm.append((time.perf_counter() - started) * 1000)
    return {"bytes": len(body), "cold_ms_median": round(statistics.median(cold), 1),
            "cold_ms_max": round(max(cold), 1), "warm_ms_median": round(statistics.median(warm), 1)}


def publishing_times(settings_file: Path, database: Path, names: list[str], rounds: int = 3) -> dict:
    """Seconds worker.publish takes after the kinds of change a worker records."""
    settings = load_settings(settings_file, environ={})
    db = schema.open_writer(database)
    rng = random.Random(1)
    everything = {("extensions", name) for name in names}
    tenth = names[::10]

    def record_again(changed: set[str]) -> None:
        for index, name in enumerate(names):  # a full run records every repository, changed or not
            if name in changed:
                store.save_repo(db, synthetic_record(index, rng, name), VIEW)
            else:
                unchanged = [BranchRecord(branch, "", "unchanged") for branch in BRANCHES]
                store.save_repo(db, RepoRecord("extensions", name, f"https://gerrit.example.org/r/{name}",
                                               unchanged), VIEW)

    def timed(prepare, changed) -> dict:
        runs = []
        for _ in range(rounds):
            prepare()
            report = publish(settings, db, changed)
            runs.append(report)
        return {"seconds": statistics.median(r["seconds"] for r in runs), "written": runs[-1]["written"],
                "removed": runs[-1]["removed"]}

    changed_set = set(tenth)
    times = {"first": publish(settings, db, None)}
    times["noop_sync"] = timed(lambda: record_again(set()), everything)
    times["sync_10pct"] = timed(lambda: record_again(changed_set), everything)
    times["only_10pct"] = timed(lambda: [store.save_repo(db, synthetic_record(i, rng, n), VIEW)
                                         for i, n in enumerate(tenth)], {("extensions", n) for n in tenth})
    times["only_one"] = timed(lambda: store.save_repo(db, synthetic_record(0, rng, names[0]), VIEW),
                              {("extensions", names[0])})
    times["nothing"] = timed(lambda: None, set())
    times["check_all"] = timed(lambda: None, None)
    db.close()
    return times


def measure(args: argparse.Namespace, work: Path) -> dict:
    """Fill the database, start the servers, run every measurement."""
    database = work / "tardist.sqlite3"
    (work / "tarballs/extensions").mkdir(parents=True)
    (work / "upstream").mkdir()
    (work / "nothing-published").mkdir()
    # The kind is configured, as in production (the app never lists the source; the worker would).
    config = work / "tardist.toml"
    config.write_text(f'database = "{database}"\ntarballs = "{work / "tarballs"}"\n'
                      f'published = "{work / "published"}"\n'
                      f"branches = {json.dumps(BRANCHES)}\n\n[[source]]\n"
                      f'kind = "extensions"\ntype = "directory"\npath = "{work / "upstream"}"\n')
    started = time.monotonic()
    names = fill_database(database, args.repos)
    results: dict = {"fill_seconds": round(time.monotonic() - started, 1)}
    results["e_publish"] = publishing_times(config, database, names)
    ports = {k: free_port() for k in ("tardist", "trivial", "nginx", "uncached", "static", "published", "edge")}
    with ExitStack() as stack:
        stack.enter_context(gunicorn("wsgi:app", ports["tardist"], work, "tardist", TARDIST_CONFIG=str(config)))
        sizes = [len(get(ports["tardist"], f"/info/extensions/{name}")[1]) for name in names[:200]]
        body_bytes = round(statistics.mean(sizes))
        results["info_body_bytes"] = body_bytes
        stack.enter_context(gunicorn("trivial_app:app", ports["trivial"], work, "trivial",
                                     TRIVIAL_BODY_BYTES=str(body_bytes), PYTHONPATH=str(BENCH)))
        quoted = ", ".join(json.dumps(name) for name in names)
        rotate = WRK_ROTATE % (quoted, "/info/extensions/")
        results["a_tardist"], results["a_trivial"] = side_by_side(
            (ports["tardist"], "/", rotate), (ports["trivial"], "/", rotate), args.seconds)

        (work / "static").mkdir()
        (work / "static/body.json").write_bytes(b"x" * body_bytes)
        values = {"SERVER_NAME": "localhost", "TARBALLS": str(work / "tarballs"), "CACHE_SECONDS": "300",
                  "GUNICORN": f"{HOST}:{ports['tardist']}",
                  "ACCESS_LOG": "off"}  # as on the static-file servers the sites are compared with
        # b) nothing published: every answer goes through nginx's proxy cache to gunicorn; and the
        # same site with the proxy cache off, which measures tardist behind nginx rather than the cache.
        proxied_site = render("nginx.conf", {**values, "PUBLISHED": str(work / "nothing-published"),
                                             "CACHE": str(work / "nginx-proxy/cache")})
        proxied = nginx_config(work, "nginx-proxy", [proxied_site.replace("@LISTEN@", f"{HOST}:{ports['nginx']}")],
                               ports["static"])
        uncached = nginx_config(work, "nginx-uncached", [
            proxied_site.replace("@LISTEN@", f"{HOST}:{ports['uncached']}")
            .replace("proxy_cache tardist_api;", "proxy_cache off;")])
        # d) the static API: deploy/nginx.conf with published/, and deploy/nginx-static.conf.
        static_api = nginx_config(work, "nginx-published", [render("nginx.conf", {
            **values, "LISTEN": f"{HOST}:{ports['published']}", "PUBLISHED": str(work / "published"),
            "CACHE": str(work / "nginx-published/cache")}), render("nginx-static.conf", {
            **values, "LISTEN": f"{HOST}:{ports['edge']}", "PUBLISHED": str(work / "published")})])
        with nginx(proxied, ports["nginx"]):
            results["b_nginx"], results["b_static"] = side_by_side(
                (ports["nginx"], "/", rotate), (ports["static"], "/body.json", ""), args.seconds)
        with nginx(uncached, ports["uncached"]):
            results["b_uncached"] = wrk(ports["uncached"], "/", rotate, args.seconds)
        stack.enter_context(nginx(static_api, ports["published"]))
        copies = work / "static/copies"  # one plain file per repository, same size, same rotation
        copies.mkdir()
        for name in names:
            (copies / name).write_bytes(b"x" * body_bytes)
        with nginx(nginx_config(work, "nginx-file", [], ports["static"]), ports["static"]):
            one_path = 'request = function() return wrk.format("GET", "/body.json") end'
            results["d_published"], results["d_static"] = side_by_side(
                (ports["published"], "/", rotate), (ports["static"], "/", one_path), args.seconds, rounds=5)
            results["d_published_again"], results["d_static_files"] = side_by_side(
                (ports["published"], "/", rotate), (ports["static"], "/", WRK_ROTATE % (quoted, "/copies/")),
                args.seconds, rounds=5)
            results["d_edge"] = wrk(ports["edge"], "/", rotate, args.seconds)
        results["c_all"] = cold_and_warm_all(ports["tardist"], database, names)
        popular = ", ".join(json.dumps(name) for name in names[:PAGE_NAMES])
        results["f_browse"], results["f_info"] = side_by_side(
            (ports["tardist"], "/", WRK_ROTATE % (popular, "/browse/extensions/")),
            (ports["tardist"], "/", WRK_ROTATE % (popular, "/info/extensions/")), args.seconds)
    return results


def goals(results: dict) -> dict:
    """Each goal's value, target and whether it is met."""
    values = {
        "a_rps_ratio": results["a_tardist"]["rps"] / results["a_trivial"]["rps"],
        "a_p99_ms": results["a_tardist"]["p99_ms"],
        "b_rps_ratio": results["b_nginx"]["rps"] / results["b_static"]["rps"],
        "c_cold_ms": results["c_all"]["cold_ms_median"],
        "d_vs_static_file": results["d_published"]["rps"] / results["d_static"]["rps"],
        "d_vs_static_files": results["d_published_again"]["rps"] / results["d_static_files"]["rps"],
        "d_vs_gunicorn": results["d_published"]["rps"] / results["a_tardist"]["rps"],
        "e_noop_sync_s": results["e_publish"]["noop_sync"]["seconds"],
        "f_browse_ratio": results["f_browse"]["rps"] / results["f_info"]["rps"],
    }
    return {name: {"value": round(value, 3), "goal": f"{op} {target}",
                   "met": value >= target if op == ">=" else value < target}
            for name, value in values.items() for op, target in [GOALS[name]]}


def print_table(results: dict, met: dict) -> None:
    """The human summary."""
    print(f"\n/info answers: {results['info_body_bytes']} bytes on average; database filled in "
          f"{results['fill_seconds']} s\n")
    print(f"{'run':<50}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    rows = [("a) gunicorn: tardist /info/extensions/<name>", "a_tardist"),
            ("a) gunicorn: trivial Flask, same size", "a_trivial"),
            ("b) nginx + deploy/nginx.conf: tardist", "b_nginx"),
            ("b) nginx: static file, same size", "b_static"),
            ("b) nginx + deploy/nginx.conf, proxy cache off", "b_uncached"),
            ("d) nginx.conf, /info from published/", "d_published"),
            ("d) nginx: static file, same size (lua)", "d_static"),
            ("d) nginx.conf, /info from published/ (again)", "d_published_again"),
            ("d) nginx: one static file per name, same rotation", "d_static_files"),
            ("d) nginx-static.conf (edge), published/", "d_edge"),
            ("f) gunicorn: /browse/extensions/<name> (200)", "f_browse"),
            ("f) gunicorn: /info/extensions/<name> (200)", "f_info")]
    for label, key in rows:
        row = results[key]
        print(f"{label:<50}{row['rps']:>10.0f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['errors']:>8}")
    c = results["c_all"]
    print(f"\nc) /info/extensions ({c['bytes'] / 1e6:.1f} MB): cold median {c['cold_ms_median']} ms, "
          f"cold max {c['cold_ms_max']} ms, warm median {c['warm_ms_median']} ms")
    labels = {"first": "first publish (empty folder)", "noop_sync": "after a no-op sync (all recorded again)",
              "sync_10pct": "after a sync that changed 10%", "only_10pct": "after syncing only 10% (--only)",
              "only_one": "after syncing one repository", "nothing": "nothing recorded since",
              "check_all": "check every file (tardist publish, gc)"}
    print(f"\ne) publishing {results['e_publish']['first']['written']} files:")
    print(f"{'after':<44}{'seconds':>10}{'written':>9}")
    for key, label in labels.items():
        row = results["e_publish"][key]
        print(f"{label:<44}{row['seconds']:>10.3f}{row['written']:>9}")
    print(f"\n{'goal':<18}{'value':>10}  {'target':<10}met")
    for name, row in met.items():
        print(f"{name:<18}{row['value']:>10.3f}  {row['goal']:<10}{'yes' if row['met'] else 'NO'}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repos", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=10, help="length of each measured wrk run")
    args = parser.parse_args(argv)
    for tool in ("wrk", NGINX):
        if not shutil.which(tool):
            parser.error(f"{tool} is not installed")
    with tempfile.TemporaryDirectory(prefix="tardist-api-bench-") as work:
        results = measure(args, Path(work))
    met = goals(results)
    print_table(results, met)
    report = {"repos": args.repos, "branches": len(BRANCHES), "seconds": args.seconds,
              "wrk": "-t2 -c16", "names": "rotating at random through every repository",
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "nginx": re.sub(r"^.*?/", "", subprocess.run([NGINX, "-v"], capture_output=True,
                                                                      text=True).stderr.strip())},
              "results": results, "goals": met}
    write_results("api_speed", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
