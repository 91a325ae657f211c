"""A synced deployment with one of everything the API can say: for the OpenAPI and fuzz tests."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Deployment, directory_source, git


def populate(deployment: Deployment, upstream, tmp_path: Path) -> None:
    """Sync extensions and skins with good, warned, manifest-broken, branch-failed and unreachable repositories."""
    cite = upstream("Cite")
    git(cite.path, "branch", "REL1_45")
    links = upstream("Links")
    links.symlink("dangling", "nowhere")
    links.commit()
    upstream("BadManifest", files={"extension.json": json.dumps({"name": 5, "requires": []})})
    upstream("NoManifest", files={"README": "nothing to see\n"})
    broken = upstream("Broken")
    git(broken.path, "branch", "REL1_45")
    broken.pin_submodule("lib", str(cite.path), "1" * 40)  # a commit that does not exist
    upstream("Vector", kind="skins", files={"skin.json": json.dumps({"name": "Vector", "type": "skin"})})
    deployment.write_config(
        directory_source("extensions", tmp_path / "upstream/extensions")
        + directory_source("skins", tmp_path / "upstream/skins")
        + f'\n[[source]]\nkind = "apps"\ntype = "list"\nrepos = {{ Gone = "{tmp_path}/nowhere/Gone.git" }}\n')
    result = deployment.sync(check=False)
    assert result.returncode == 1 and deployment.summary(result)["failed"] == 2, result.stderr
