"""Progress on a terminal: a bar redrawn in place, failures on lines of their own."""

from __future__ import annotations

import os
import pty
import subprocess

from helpers import TARDIST


def test_sync_draws_a_progress_bar_on_a_terminal(deployment, upstream, tmp_path):
    for name in ("Cite", "Echo", "Math"):
        upstream(name)
    deployment.write_config(f'[[source]]\nkind = "extensions"\ntype = "directory"\n'
                            f'path = "{tmp_path}/upstream/extensions"\n'
                            f'[[source]]\nkind = "skins"\ntype = "list"\nrepos = {{ Gone = "{tmp_path}/gone" }}\n')
    controller, terminal = pty.openpty()
    sync = subprocess.Popen([TARDIST, "sync"], cwd=deployment.root, stdout=subprocess.PIPE, stderr=terminal,
                            env={"TARDIST_CONFIG": str(deployment.config), "PATH": "/usr/bin:/bin",
                                 "COLUMNS": "100"})
    os.close(terminal)
    screen = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    out, _ = sync.communicate(timeout=60)
    os.close(controller)
    text = screen.decode()
    assert sync.returncode == 1 and b"\"failed\": 1" in out
    assert "\r[" in text and "] 4/4 repositories, 3 tarballs built, 1 failed" in text
    assert "#" * 10 in text
    assert "\nFAILED skins/Gone: git ls-remote failed" in text.replace("\r\n", "\n").replace("\r", "\n")
