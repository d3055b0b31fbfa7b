"""Provenance: our commit and dirty flag, upstream's facts passed through, software, machine and UTC times."""
from __future__ import annotations

import datetime as dt
import platform
import re
import subprocess

from harness import provenance
from harness.provenance import REPO_ROOT, _git_cli, collect, git_state


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=True).stdout


def test_our_sha_is_the_checked_out_commit():
    sha, dirty = git_state()
    assert sha == git("rev-parse", "HEAD").strip()
    assert dirty == bool(git("status", "--porcelain", "--untracked-files=no").strip())


def test_git_cli_fallback_agrees_with_gitpython():
    assert _git_cli(REPO_ROOT) == git_state(REPO_ROOT)


def test_a_directory_outside_git_has_no_sha(tmp_path):
    assert git_state(tmp_path) == (None, None)
    assert _git_cli(tmp_path) == (None, None)


def test_collect_records_software_machine_time_and_upstream_facts():
    p = collect(["nanochat-bench", "run"], upstream={"sha": "abc123", "ref": "master", "clean": True})
    assert (p.upstream_sha, p.upstream_ref, p.upstream_clean) == ("abc123", "master", True)
    assert p.argv == ["nanochat-bench", "run"] and p.python == platform.python_version()
    assert p.torch and p.cpu_count >= 1 and p.hostname
    assert dt.datetime.fromisoformat(p.utc_started).utcoffset() == dt.timedelta(0)
    assert p.packages.get("tiktoken")            # upstream's runtime deps as installed


def _nvml_driver() -> str | None:
    """What NVML itself says, asked independently of the module under test (None where it cannot answer)."""
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        v = pynvml.nvmlSystemGetDriverVersion()
        return v.decode() if isinstance(v, bytes) else v
    finally:
        pynvml.nvmlShutdown()


def test_driver_version_is_nvmls_answer_or_none_where_there_is_no_driver():
    expected = _nvml_driver()
    assert provenance.driver_version() == expected
    if expected is not None:     # a GPU machine: a dotted version such as 580.65.06
        assert re.fullmatch(r"\d+(\.\d+)+", expected)
