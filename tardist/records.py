"""What one sync learned: the records `worker.sync` makes and `tardist.store` writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# "built"; "reused" (a recorded tarball of this commit); "unchanged"; "failed"; or
# "waiting" (failed before at this commit; not tried again before its retry time)
BranchState = Literal["built", "reused", "unchanged", "failed", "waiting"]


@dataclass
class BranchRecord:
    """What one sync learned about one snapshot branch."""

    branch: str
    commit: str
    state: BranchState
    committed_at: str = ""
    tarball: str = ""
    size: int = 0
    sha256: str = ""
    manifest: dict[str, Any] | None = None
    manifest_errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    built_at: str = ""  # when the tarball was built, if not now
    modules: list[str] = field(default_factory=list)  # module mirrors (folder names) its tree used
    retry_at: str = ""  # when a waiting branch is tried again
    descriptions: dict[str, str] = field(default_factory=dict)  # language -> translated description
    vendor: list[dict[str, str]] = field(default_factory=list)  # packages composer put in vendor/


@dataclass
class RepoRecord:
    """What one sync learned about one repository."""

    kind: str
    name: str
    repository: str | None  # the clone URL shown to people (None: none may be shown)
    branches: list[BranchRecord] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # recorded branches that no longer exist
    error: str | None = None  # the whole repository failed (clone, fetch, ...)
    retry_heads: dict[str, str] | None = None  # the heads a failed fetch wanted: retried with backoff
    waiting: bool = False  # the fetch failed before for these heads and was not tried again yet
    retry_at: str = ""  # when a waiting repository is tried again
    source: str = ""  # the key of the source that lists it

    @property
    def failed(self) -> bool:
        """True when the repository or any of its branches is in error (failed now, or waiting to retry)."""
        return self.error is not None or any(b.state in ("failed", "waiting") for b in self.branches)

    @property
    def waits(self) -> bool:
        """True when something failed before and was left alone until its retry time."""
        return self.waiting or any(b.state == "waiting" for b in self.branches)
