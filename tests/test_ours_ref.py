"""The ours@REF arm (harness/adapters/ours_ref.py): our trainer at another git ref, from a temporary worktree that
never touches the user's tree; end to end from a clean clone with the tiny preset."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.adapters import registry
from harness.adapters.base import AdapterError
from harness.adapters.ours_ref import OursRefAdapter, resolve

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path = REPO, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(cwd))
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_a_ref_resolves_to_its_commit_and_a_bad_one_is_refused_with_the_fix():
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert resolve("HEAD") == head
    with pytest.raises(AdapterError, match=r"ours@no-such-ref-xyz: no such commit, branch or tag .*ours@HEAD~1"):
        resolve("no-such-ref-xyz")


def test_ours_at_ref_is_an_arm_that_records_its_commit_for_resume():
    assert registry.is_arm("ours@HEAD~1") and registry.arm_class("ours@HEAD~1") is OursRefAdapter
    assert registry.arm_class("ours@main:aa") is OursRefAdapter and not registry.is_arm("theirs@HEAD")
    a = OursRefAdapter("HEAD~1", "abc123")
    assert a.name == "ours@HEAD~1" and a.role is None
    assert OursRefAdapter.setup_fields(a.config()) == {"ref_shas": {"ours@HEAD~1": "abc123"}}


def test_an_unknown_ref_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    proc = cli("run", "--preset", "tiny", "--impl", "ours@no-such-ref-xyz,ours", "--out", str(tmp_path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "ours@no-such-ref-xyz: no such commit" in proc.stderr
    assert not any(tmp_path.iterdir())   # refused before a campaign folder exists


def test_ours_at_head_1_against_ours_runs_from_a_clean_clone(tmp_path, workspace, compile_cache):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", "HEAD"], check=True)
    proc = cli("run", "--preset", "tiny", "--impl", "ours@HEAD~1,ours", "--set", "num_iterations=4",
               "--set", "eval_every=2", "--set", "steady_state_skip=1", "--out", str(tmp_path / "c"),
               "--campaign-id", "ref", "--workspace", str(workspace), "--compile-cache", str(compile_cache),
               "--quiet", cwd=clone)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    campaign = json.loads((tmp_path / "c" / "ref" / "campaign.json").read_text())
    head_1 = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD~1"], capture_output=True,
                            text=True).stdout.strip()
    assert campaign["arms"]["ours@HEAD~1"] == {"ref": "HEAD~1", "sha": head_1}
    cmp = campaign["comparison"]
    assert (cmp["baseline"], cmp["candidate"]) == ("ours@HEAD~1", "ours") and cmp["audit"]["matched"]
    base_bpb = cmp["metrics"]["final_val_bpb"]["baseline"]["mean"]
    assert cmp["targets"]["target_bpb"] == base_bpb and "compute_multiplier" in cmp["metrics"]
    first = json.loads((tmp_path / "c" / "ref" / campaign["runs"][0]["result_path"]).read_text())
    assert first["implementation"] == "ours@HEAD~1" and first["provenance"]["ours_sha"] == head_1
    worktrees = subprocess.run(["git", "-C", str(clone), "worktree", "list"], capture_output=True, text=True).stdout
    assert worktrees.count("\n") == 1   # the run's worktree is gone again
    assert subprocess.run(["git", "-C", str(clone), "status", "--porcelain"], capture_output=True,
                          text=True).stdout == ""   # the user's tree untouched
