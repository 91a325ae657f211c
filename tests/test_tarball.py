"""Tarballs: reproducible bytes, atomic publication, nothing partial left behind."""

from __future__ import annotations

import gzip
import hashlib
import os

import pytest
from helpers import extension_files

from tardist.layout import TEMP_PREFIX, mirror_path, tarball_name
from worker.git import GitError, ObjectReader
from worker.tarball import TarballWriteError, build_tarball, extra_files, remove_stale_temporaries
from worker.tree import read_tree


def test_tarball_name_is_what_extension_distributor_computes():
    assert tarball_name("MassMessage", "REL1_45", "dd41d82aa0b1c2d3e4f5") == "MassMessage-REL1_45-dd41d82.tar.gz"


def test_same_commit_gives_identical_bytes_in_any_folder(deployment, upstream, tmp_path):
    repo = upstream("Cite", files={**extension_files("Cite"), "ünïcode/名前.txt": "x", "a" * 120 + "/long.txt": "y"})
    deployment.sync()
    settings = deployment.settings()
    mirror = mirror_path(settings, "extensions", "Cite")
    outputs = []
    for folder in ("one", "two"):
        with ObjectReader() as reader:
            tree = read_tree(settings, reader, mirror, str(repo.path), repo.head())
            built = build_tarball(reader, tree, extra_files("Cite", "master", repo.head(), 0, "url"), "Cite", 0,
                                  tmp_path / folder / "Cite.tar.gz")
        outputs.append((tmp_path / folder / "Cite.tar.gz").read_bytes())
        assert built.sha256 == hashlib.sha256(outputs[-1]).hexdigest() and built.size == len(outputs[-1])
    assert outputs[0] == outputs[1]
    assert gzip.decompress(outputs[0])  # a complete gzip stream
    assert outputs[0][3] & 0x08 == 0, "no file name in the gzip header"


def test_a_failed_build_leaves_neither_partial_nor_temporary_files(deployment, upstream, tmp_path):
    repo = upstream("Cite")
    deployment.sync()
    settings = deployment.settings()
    mirror = mirror_path(settings, "extensions", "Cite")
    dest = tmp_path / "out" / "Cite.tar.gz"

    class FailingReader(ObjectReader):
        def read(self, mirror, sha):
            raise RuntimeError("stop half way")

    with ObjectReader() as reader:
        tree = read_tree(settings, reader, mirror, str(repo.path), repo.head())
    with FailingReader() as reader, pytest.raises(RuntimeError):
        build_tarball(reader, tree, {}, "Cite", 0, dest)
    assert list(dest.parent.iterdir()) == []


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / "extensions").mkdir()
    (tmp_path / "extensions" / f"{TEMP_PREFIX}Cite-master-abcdef1.tar.gz.123").write_bytes(b"partial")
    (tmp_path / "extensions" / "Cite-master-abcdef1.tar.gz").write_bytes(b"complete")
    assert remove_stale_temporaries(tmp_path) == 1
    assert [p.name for p in (tmp_path / "extensions").iterdir()] == ["Cite-master-abcdef1.tar.gz"]


def test_a_read_failure_says_read_and_a_write_failure_says_write(deployment, upstream, tmp_path):
    repo = upstream("Cite")
    deployment.sync()
    settings = deployment.settings()
    mirror = mirror_path(settings, "extensions", "Cite")
    with ObjectReader() as reader:
        tree = read_tree(settings, reader, mirror, str(repo.path), repo.head())
        with pytest.raises(GitError, match=f"cannot read object {'0' * 40} from Cite.git: missing"):
            reader.read(mirror, "0" * 40)
        assert reader.read(mirror, tree.files["README.md"].sha) == b"# Cite\n", "the reader goes on after a miss"
        blocked = tmp_path / "not-a-folder"
        blocked.write_text("a file where the tarball folder should be")
        with pytest.raises(TarballWriteError, match="cannot write Cite.tar.gz"):
            build_tarball(reader, tree, {}, "Cite", 0, blocked / "Cite.tar.gz")


def test_stale_temporaries_are_removed_but_those_of_living_processes_are_being_written(tmp_path):
    folder = tmp_path / "tarballs" / "extensions"
    folder.mkdir(parents=True)
    writing = folder / f".tmp-Cite-master-1234567.tar.gz.{os.getpid()}"  # a worker thread builds it now
    left = folder / ".tmp-Echo-master-1234567.tar.gz.999999999"  # no such process: a killed run's
    unnamed = folder / ".tmp-Math.git"
    for path in (writing, left, unnamed):
        path.write_bytes(b"partial")
    assert remove_stale_temporaries(tmp_path / "tarballs") == 2
    assert writing.exists() and not left.exists() and not unnamed.exists()
