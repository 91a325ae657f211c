"""Make a handful of sample extension and skin repositories and a config to sync them.

    python scripts/samples.py demo

writes demo/upstream/{extensions,skins,lib}/... (real git repositories with
extension.json/skin.json, i18n/en.json (and de.json), release branches, a release tag that
shares its branch's name, and a submodule) and demo/tardist.toml.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

EXTENSIONS = {
    "Cite": ("parserhook", "Adds <ref> and <references> tags for citations", ["Ævar Arnfjörð Bjarmason"]),
    "ParserFunctions": ("parserhook", "Enhances the parser with logical functions", ["Tim Starling"]),
    "MassMessage": ("specialpage", "Send a message to a list of pages", ["Kunal Mehta"]),
    "Echo": ("other", "Notifications for users", ["Andrew Garrett", "Benny Situ"]),
    "VisualEditor": ("editor", "Visual editor for MediaWiki", ["Trevor Parscal", "Roan Kattouw"]),
}
SKINS = {
    "Vector": ("skin", "Modern version of MonoBook with fresh look", ["Trevor Parscal"]),
    "Timeless": ("skin", "A timeless skin", ["Isarra Yos"]),
}
RELEASES = ["REL1_43", "REL1_44", "REL1_45"]
GERMAN = {  # i18n/de.json, so that ?uselang=de has something to show
    "Cite": "Ergänzt die Tags <ref> und <references> für Einzelnachweise",
    "Echo": "Benachrichtigungen für Benutzer",
    "Vector": "Moderne Version von MonoBook mit frischem Aussehen",
}


def git(cwd: Path, *args: str, day: int = 1) -> str:
    """Run git with a fixed identity and date."""
    date = f"2026-{1 + day // 28:02d}-{1 + day % 28:02d}T12:00:00Z"
    env = {**os.environ, "GIT_AUTHOR_NAME": "Sample Author", "GIT_AUTHOR_EMAIL": "author@example.org",
           "GIT_COMMITTER_NAME": "Sample Author", "GIT_COMMITTER_EMAIL": "author@example.org",
           "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date,
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    return subprocess.run(["git", "-c", "protocol.file.allow=always", *args], cwd=cwd, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def write(root: Path, files: dict[str, str]) -> None:
    """Write files below root."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


def make_repo(path: Path, kind: str, name: str, type_: str, description: str, authors: list[str],
              day: int, submodule: Path | None = None) -> None:
    """One repository with a few commits, release branches cut along the way and a same-named tag."""
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "-b", "master")
    manifest_file = "skin.json" if kind == "skins" else "extension.json"
    key = f"{name.lower()}-desc"
    for release, minor in zip(RELEASES + ["master"], (43, 44, 45, 46)):
        manifest = {"name": name, "version": f"1.{minor}.0", "author": authors,
                    "url": f"https://www.mediawiki.org/wiki/{'Skin' if kind == 'skins' else 'Extension'}:{name}",
                    "descriptionmsg": key, "license-name": "GPL-2.0-or-later", "type": type_,
                    "requires": {"MediaWiki": f">= 1.{minor}.0"}, "manifest_version": 2}
        write(path, {
            manifest_file: json.dumps(manifest, indent="\t", ensure_ascii=False) + "\n",
            "i18n/en.json": json.dumps({"@metadata": {"authors": authors}, key: description}, indent="\t") + "\n",
            **({"i18n/de.json": json.dumps({key: GERMAN[name]}, indent="\t", ensure_ascii=False) + "\n"}
               if name in GERMAN else {}),
            f"includes/{name}Hooks.php": f"<?php\n// {name} for MediaWiki 1.{minor}\nclass {name}Hooks {{}}\n",
            "resources/main.js": f"// {name} {release}\nmw.hook( 'wikipage.content' ).add( () => {{}} );\n",
            "COPYING": "GNU GENERAL PUBLIC LICENSE, Version 2\n",
            "README.md": f"# {name}\n\n{description}.\n",
        })
        if release == "master":
            (path / "docs").mkdir(exist_ok=True)
            if not (path / "docs/README.md").exists():
                (path / "docs/README.md").symlink_to("../README.md")  # in-tree symlink: packed as a file
        git(path, "add", "-A")
        git(path, "commit", "--quiet", "-m", f"Prepare {release}", day=day)
        day += 3
        if release != "master":
            git(path, "branch", release)
    git(path, "tag", "-a", "REL1_43", "-m", "REL1_43 release tag (shares the branch's name)", "REL1_43~0")
    if submodule is not None:
        git(path, "submodule", "add", "--quiet", str(submodule), "lib/ooui")
        git(path, "commit", "--quiet", "-m", "Add OOUI as a submodule", day=day)


def main(folder: str) -> None:
    """Write the sample repositories and config under folder."""
    root = Path(folder).absolute()
    upstream = root / "upstream"
    if upstream.exists():
        shutil.rmtree(upstream)
    lib = upstream / "lib" / "ooui"
    lib.mkdir(parents=True)
    git(lib, "init", "--quiet", "-b", "master")
    write(lib, {"ooui.js": "// OOUI widgets\n", "README.md": "# OOUI\n"})
    git(lib, "add", "-A")
    git(lib, "commit", "--quiet", "-m", "OOUI")
    for day, (name, (type_, description, authors)) in enumerate(EXTENSIONS.items()):
        make_repo(upstream / "extensions" / name, "extensions", name, type_, description, authors, day,
                  submodule=lib if name == "VisualEditor" else None)
    for day, (name, (type_, description, authors)) in enumerate(SKINS.items()):
        make_repo(upstream / "skins" / name, "skins", name, type_, description, authors, day)
    (root / "tardist.toml").write_text(f'''# Sample configuration made by scripts/samples.py
database = "{root}/instance/tardist.sqlite3"
mirrors = "{root}/mirrors"
tarballs = "{root}/tarballs"
published = "{root}/published"
branches = ["master", "REL1_45", "REL1_44", "REL1_43", "REL1_39"]
submodule_protocols = ["file", "https", "http", "git", "ssh"]

[[source]]
kind = "extensions"
type = "directory"
path = "{upstream}/extensions"

[[source]]
kind = "skins"
type = "directory"
path = "{upstream}/skins"
''')
    print(f"sample repositories in {upstream}, config in {root / 'tardist.toml'}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo")
