"""The /info answer of one repository, rendered by the worker when it records a sync.

Rendering at write time keeps the API a lookup: /info/<kind> of 2,000
repositories is a join of stored strings, not 10,000 rows decoded and encoded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from tardist.settings import Settings


@dataclass(frozen=True)
class InfoView:
    """The settings an /info answer depends on: when they change, answers are rendered again."""

    branches: tuple[str, ...]
    tarball_url: str

    @classmethod
    def of(cls, settings: Settings) -> "InfoView":
        """The view of the given settings."""
        return cls(settings.branches, settings.tarball_url)

    @property
    def key(self) -> str:
        """A string that changes whenever the view does."""
        return json.dumps([list(self.branches), self.tarball_url])


def render_info(view: InfoView, repo: Mapping[str, Any], branch_rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The /info answer of one repository from its database rows.

    Branches come in configured order; repository-level facts come from the
    first configured branch that has a manifest.
    """
    by_branch = {row["branch"]: row for row in branch_rows}
    branches: dict[str, Any] = {}
    errors: dict[str, str] = {}
    facts: dict[str, Any] | None = None
    for branch in view.branches:
        row = by_branch.get(branch)
        if row is None:
            continue
        if row["error"]:
            errors[branch] = row["error"]
        if not row["tarball"]:
            continue
        manifest = json.loads(row["manifest"]) if row["manifest"] else None
        if facts is None and manifest is not None:
            facts = manifest
        branches[branch] = {
            "commit": row["commit_sha"], "sha7": row["commit_sha"][:7], "committed_at": row["committed_at"],
            "tarball": row["tarball"], "url": f"{view.tarball_url}/{repo['kind']}/{row['tarball']}",
            "size": row["size"], "sha256": row["sha256"], "built_at": row["built_at"],
            "version": (manifest or {}).get("version"), "requires": (manifest or {}).get("requires", {}),
            "manifest_errors": json.loads(row["manifest_errors"] or "[]"),
            "warnings": json.loads(row["warnings"] or "[]"),
            "vendor": json.loads(row["vendor"] or "[]"),
        }
    facts = facts or {}
    return {
        "name": repo["name"], "kind": repo["kind"], "repository": repo["repository"],
        "description": facts.get("description"), "license": facts.get("license"), "url": facts.get("url"),
        "authors": facts.get("authors", []), "type": facts.get("type"),
        "branches": branches, "errors": errors, "error": repo["error"], "checked_at": repo["checked_at"],
    }
