"""Fixtures: isolation from the developer's setup, upstream repositories, a deployment (per test or per module),
a git remote that hangs, a headless Chromium; and the check that a test carries the markers of what it needs.
The helpers they are built on are in helpers.py."""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from browsing import start_chromium
from helpers import Deployment, make_deployment, unpack_every_tarball, upstream_maker

from loopback.servers import SilentServer


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's instance/tardist.toml or TARDIST_* variables."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("TARDIST_"):
            monkeypatch.delenv(key)


@pytest.fixture
def upstream(tmp_path: Path):
    """Make upstream repositories under tmp_path/upstream/<kind>/<Name>."""
    return upstream_maker(tmp_path)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """An empty deployment whose config lists tmp_path/upstream/extensions and .../skins as sources."""
    deployment = make_deployment(tmp_path)
    yield deployment
    unpack_every_tarball(deployment.root / "tarballs", tmp_path / "unpacked")


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A temporary folder the tests of one module share (tmp_path is each test's own)."""
    return tmp_path_factory.mktemp(request.module.__name__.removeprefix("test_"))


@pytest.fixture(scope="module")
def module_upstream(module_tmp: Path):
    """Make upstream repositories under module_tmp/upstream/<kind>/<Name>, shared by a module's tests."""
    return upstream_maker(module_tmp)


@pytest.fixture(scope="module")
def module_deployment(module_tmp: Path) -> Deployment:
    """An empty deployment shared by a module's tests, with the sources of `deployment` under module_tmp."""
    return make_deployment(module_tmp)


@pytest.fixture
def hanging_remote():
    """A git remote that never answers until the test releases it."""
    remote = SilentServer()
    yield remote
    remote.close()


@pytest.fixture
def browser(tmp_path: Path):
    """Headless Chromium (tests/browsing.py) saving downloads into tmp_path/downloads; skipped without it."""
    driver = start_chromium(tmp_path / "downloads")
    try:
        yield driver
    finally:
        driver.quit()


# What a test needs, seen in its code or its fixtures' code: it must carry the marker that says so, so that
# `-m "not nginx"` and the like leave out exactly the tests that need what is missing.
NEEDS = {"nginx": ("start_gunicorn(", "running_nginx(", "nginx_main_config(", "wait_until_serving(", "GUNICORN"),
         "browser": ("start_chromium(",), "systemd": ("System()",)}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse to run a test that needs nginx, gunicorn, Chromium or a booted systemd without its marker."""
    sources: dict[object, str] = {}

    def source(function) -> str:
        if function not in sources:
            try:
                sources[function] = inspect.getsource(function)
            except (OSError, TypeError):
                sources[function] = ""
        return sources[function]

    missing = []
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        # the fixtures the test uses, its own and theirs (pytest keeps them on the item)
        fixtures = [definitions[-1].func for definitions in item._fixtureinfo.name2fixturedefs.values()]
        code = "".join(source(function) for function in (item.function, *fixtures))
        missing += [f"{item.nodeid}: mark it {marker}" for marker, needles in NEEDS.items()
                    if any(needle in code for needle in needles) and item.get_closest_marker(marker) is None]
    if missing:
        raise pytest.UsageError("tests without the marker of what they need:\n" + "\n".join(missing))
