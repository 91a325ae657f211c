"""The schema: each migration from a database an older tardist made, and a newer one refused."""

from __future__ import annotations

import json
import sqlite3

import pytest
from helpers import make_old_database

from tardist.schema import MIGRATIONS, SchemaTooNew, open_writer


@pytest.mark.slow
@pytest.mark.parametrize("version", range(1, len(MIGRATIONS)))
def test_a_database_of_each_older_schema_is_migrated_and_keeps_its_data(deployment, upstream, version):
    repo = upstream("Cite")
    repo.commit({"README.md": "second\n"})
    deployment.sync()
    client = deployment.app().test_client()
    before = client.get("/info/extensions/Cite").get_json()
    database = deployment.settings().database
    make_old_database(database, version)
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == version
    result = deployment.sync()
    summary = deployment.summary(result)
    assert (summary["built"], summary["unchanged"], summary["failed"]) == (0, 1, 0), "nothing is rebuilt"
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    assert runs == 2, "the old run is kept beside the new one"
    after = deployment.app().test_client().get("/info/extensions/Cite").get_json()
    assert after == before
    status = json.loads(deployment.cli("status").stdout)
    assert status["counts"]["tarballs"] == 1


@pytest.mark.slow
def test_a_database_made_by_a_newer_tardist_is_refused(deployment, upstream):
    upstream("Cite")
    deployment.sync()
    database = deployment.settings().database
    newer = len(MIGRATIONS) + 1
    with sqlite3.connect(database) as conn:
        conn.execute(f"PRAGMA user_version = {newer}")
    with pytest.raises(SchemaTooNew, match=f"schema version {newer}, newer than this tardist knows"):
        open_writer(database)
    for command in (("sync",), ("status",), ("gc",), ("init-db",)):
        result = deployment.cli(*command)
        assert result.returncode == 2, command
        assert f"schema version {newer}, newer than this tardist knows ({len(MIGRATIONS)})" in result.stderr
    response = deployment.app().test_client().get("/list")
    assert response.status_code == 503
    assert "made by a newer tardist" in response.get_json()["error"]["message"]
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == newer, "left as it was"
