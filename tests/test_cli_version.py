"""`nanochat-bench --version`: the package version, the checked-out commit (dirty or not) and the upstream pin."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from upstream.pin import PINNED_COMMIT

REPO = Path(__file__).resolve().parents[1]


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_version_names_the_package_the_commit_and_the_pin():
    proc = subprocess.run([sys.executable, "-m", "harness", "--version"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    m = re.fullmatch(r"nanochat-bench (\S+) \(commit ([0-9a-f]{10})(-dirty)?; upstream pin ([0-9a-f]{10})\)\n",
                     proc.stdout)
    assert m, proc.stdout
    assert m.group(2) == git("rev-parse", "HEAD")[:10] and m.group(4) == PINNED_COMMIT[:10]
    assert bool(m.group(3)) == bool(git("status", "--porcelain", "--untracked-files=no"))
