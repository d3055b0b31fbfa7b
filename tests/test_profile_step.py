"""benchmarks/profile_step.py: the allocator-peak method, the kernel families, and the CLI's one-line errors."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.profile_step import FAMILIES, allocator_peak, families

REPO = Path(__file__).resolve().parents[1]


def test_allocator_peak_counts_every_live_byte_including_ones_freed_before_the_end():
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        a = torch.empty(1 << 20)  # 4 MiB
        b = torch.empty(1 << 21)  # 8 MiB: 12 MiB live
        del a
        c = torch.empty(1 << 19)  # 2 MiB: 10 MiB live
        del b, c
    peak, final, _ = allocator_peak(prof)
    assert peak == 12 * 2**20 and final == 0


def test_allocator_peak_says_where_the_steps_phases_start_and_peak():
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        kept = torch.empty(1 << 20)  # 4 MiB live throughout
        with torch.profiler.record_function("model"):
            a = torch.empty(1 << 21)  # +8 MiB
            del a
        with torch.profiler.record_function("optimizer"):
            b = torch.empty(1 << 19)  # +2 MiB
            del b
    _, _, phases = allocator_peak(prof)
    assert phases["model"] == {"entry": 4 * 2**20, "peak": 12 * 2**20}
    assert phases["optimizer"] == {"entry": 4 * 2**20, "peak": 6 * 2**20}
    del kept


def test_families_split_matmuls_by_phase_and_name_the_rest():
    w, x = torch.randn(64, 64, requires_grad=True), torch.randn(32, 64)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        with torch.profiler.record_function("model"):
            loss = torch.tanh(x @ w).sum()
            loss.backward()
        with torch.profiler.record_function("optimizer"):
            with torch.no_grad():
                g = w.grad.unsqueeze(0)
                w.sub_((g @ g.mT @ g).squeeze(0) * 0.01)
    fam = families(prof)
    assert fam["model matmuls (mm)"] > 0 and fam["Muon Polar Express matmuls"] > 0
    assert fam["softcap + cross-entropy"] > 0  # the tanh
    assert set(name for name, _, _ in FAMILIES) <= set(fam)
    assert any(k.startswith("optimizer: aten::bmm") for k in fam["kernels"])


@pytest.mark.parametrize("flag", ["--rounds=0", "--memory-steps=0", "--warmup=-1", "--sides=ours,theirs",
                                  "--sides=ours,ours"])
def test_bad_counts_are_one_line_errors_with_exit_2(flag):
    r = subprocess.run([sys.executable, "-m", "benchmarks.profile_step", flag], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1


def test_without_an_upstream_source_it_says_how_to_give_one(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "benchmarks.profile_step", "--rounds=1", "--warmup=0", "--eager"],
                       cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "NANOCHAT_UPSTREAM" in r.stderr.strip().splitlines()[-1]
