"""The CUDA paths that can be exercised without a GPU: bf16 compute-dtype selection, the torch peak memory capture,
the launch lines of both arms for 1 and 8 GPUs, and Flash Attention 3 absence falling back to SDPA as upstream
does. What only a GPU can prove is marked ``gpu`` (skipped here, run by `make gpu-check`'s machine)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from harness.adapters.base import RunRequest
from harness.adapters.ours import OursAdapter
from harness.adapters.upstream import UpstreamAdapter
from harness.budget import load_preset
from harness.process import ProcessOptions, child_env
from models import cuda_memory
from models.gpt import default_compute_dtype
from upstream import deps
from upstream.logparse import LogParser

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# --- bf16 compute dtype ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("capability, expected", [((9, 0), torch.bfloat16), ((8, 0), torch.bfloat16),
                                                  ((8, 9), torch.bfloat16), ((7, 5), torch.float32)])
def test_cuda_capability_picks_bf16_from_ampere_on_and_fp32_before(monkeypatch, capability, expected):
    monkeypatch.delenv("NANOCHAT_DTYPE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert default_compute_dtype() == expected


def test_without_cuda_the_compute_dtype_is_fp32(monkeypatch):
    monkeypatch.delenv("NANOCHAT_DTYPE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_compute_dtype() == torch.float32


def test_upstreams_printed_bf16_dtype_reaches_its_final_record():
    parser = LogParser(commit="abc")
    for line in ["COMPUTE_DTYPE: torch.bfloat16 (auto-detected: CUDA SM 90 (bf16 supported))",
                 "✓ Using Flash Attention 3: efficient, new and awesome."]:
        parser.feed(line, t_s=0.0)
    assert (parser.facts["compute_dtype"], parser.facts["attention"]) == ("torch.bfloat16", "fa3")


# --- torch peak memory -----------------------------------------------------------------------------------------

class CountingCuda:
    """Records the calls cuda_memory makes, with torch.cuda's own function names (checked below)."""
    def __init__(self):
        self.calls = []

    def max_memory_allocated(self, device=None):
        self.calls.append(("max_memory_allocated", device))
        return 3 * 2**30

    def max_memory_reserved(self, device=None):
        self.calls.append(("max_memory_reserved", device))
        return 4 * 2**30


def test_peak_capture_reads_allocated_and_reserved_of_the_runs_device():
    cuda, dev = CountingCuda(), torch.device("cuda", 0)
    assert cuda_memory.peaks(dev, cuda=cuda) == cuda_memory.CudaPeaks(3 * 2**30, 4 * 2**30)
    assert cuda.calls == [("max_memory_allocated", dev), ("max_memory_reserved", dev)]
    for name, _ in cuda.calls:   # the names exist in torch.cuda with a device parameter
        assert "device" in torch.cuda.__dict__[name].__code__.co_varnames


def test_peak_capture_off_cuda_is_unknown_not_zero():
    cuda = CountingCuda()
    assert cuda_memory.peaks(torch.device("cpu"), cuda=cuda) == cuda_memory.CudaPeaks(None, None)
    assert cuda.calls == []


@pytest.mark.gpu
@needs_cuda
def test_peak_capture_sees_a_real_allocation_and_reserved_covers_allocated():
    dev = torch.device("cuda", 0)
    x = torch.empty(256 * 2**20, dtype=torch.uint8, device=dev)
    p = cuda_memory.peaks(dev)
    del x
    assert p.allocated_bytes >= 256 * 2**20 and p.reserved_bytes >= p.allocated_bytes


@pytest.mark.gpu
@needs_cuda
def test_bf16_is_chosen_on_this_gpu_when_it_is_ampere_or_newer():
    assert (default_compute_dtype() == torch.bfloat16) == (torch.cuda.get_device_capability() >= (8, 0))


# --- launch lines for 1 and 8 GPUs -----------------------------------------------------------------------------

def request(tmp_path: Path, preset: str) -> RunRequest:
    base = tmp_path / "base"
    for d in ("base_data_climbmix", "tokenizer"):
        (base / d).mkdir(parents=True, exist_ok=True)
    return RunRequest(budget=load_preset(preset), seed=42, repeat=0, run_id="01-x", run_dir=tmp_path / "run",
                      campaign_dir=tmp_path, base_dir=base)


def upstream_adapter(tmp_path: Path) -> UpstreamAdapter:
    return UpstreamAdapter(checkout=SimpleNamespace(path=tmp_path / "nanochat", sha="f" * 40))


@pytest.mark.parametrize("preset", ["d12", "gpu-smoke"])
def test_one_gpu_presets_launch_both_arms_as_one_plain_process(tmp_path, preset):
    req = request(tmp_path, preset)
    ours = OursAdapter().launch(req).command
    up = upstream_adapter(tmp_path).launch(req).command
    assert ours[:3] == [sys.executable, "-m", "models.train"] and "--device-type=cuda" in ours and "--compile" in ours
    assert up[:3] == [sys.executable, "-m", "upstream.launch"] and "--device-type=cuda" in up and "--run=dummy" in up
    assert not any("torch.distributed.run" in w for w in ours + up)


def test_the_eight_gpu_preset_launches_both_arms_under_torchrun_with_eight_processes(tmp_path):
    req = request(tmp_path, "d20")
    ours = OursAdapter().launch(req).command
    up = upstream_adapter(tmp_path).launch(req).command
    assert ours[:6] == [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=8", "--nnodes=1",
                        "--standalone"]
    assert ours[6:8] == ["-m", "models.train"]
    assert up[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8"]
    assert up[5:7] == ["-m", "upstream.launch"] and not any(w.startswith("--run=") for w in up)


@pytest.mark.parametrize("gpus, visible", [([0], "0"), (list(range(8)), "0,1,2,3,4,5,6,7")])
def test_the_runs_see_exactly_the_chosen_gpus_in_nvml_order(gpus, visible):
    env = child_env({}, ProcessOptions(gpus=gpus))
    assert (env["CUDA_VISIBLE_DEVICES"], env["CUDA_DEVICE_ORDER"]) == (visible, "PCI_BUS_ID")


# --- Flash Attention 3 absent ----------------------------------------------------------------------------------

def test_without_kernels_upstream_still_runs_and_the_sdpa_fallback_is_said(monkeypatch):
    real_find_spec = deps.importlib.util.find_spec
    monkeypatch.setattr(deps.importlib.util, "find_spec", lambda name: None if name == "kernels" else real_find_spec(name))
    assert "kernels" not in deps.missing() and "kernels" in deps.missing(cuda=True)
    deps.check()                       # not a reason to stop: upstream falls back to SDPA itself
    assert deps.warnings(cuda=True) == ["'kernels' is not installed: upstream uses PyTorch SDPA instead of Flash "
                                        "Attention 3 on this GPU"]
    assert deps.warnings(cuda=False) == []


def test_upstreams_sdpa_fallback_line_is_recorded_as_sdpa():
    parser = LogParser(commit="abc")
    parser.feed("WARNING: Flash Attention 3 not available, using PyTorch SDPA fallback", t_s=0.0)
    assert parser.facts["attention"] == "sdpa"


FA3_PROBE = textwrap.dedent("""
    import sys, torch
    torch.cuda.is_available = lambda: True                  # a Hopper GPU, as upstream's loader sees it
    torch.cuda.get_device_capability = lambda device=None: (9, 0)
    sys.modules["kernels"] = None                           # ... without the 'kernels' package (the lent GPU box)
    sys.path.insert(0, sys.argv[1])
    import nanochat.flash_attention as fa
    print(fa.HAS_FA3, fa.USE_FA3)
""")


@pytest.mark.upstream
def test_upstreams_own_loader_falls_back_to_sdpa_on_hopper_without_kernels(upstream_repo):
    out = subprocess.run([sys.executable, "-c", FA3_PROBE, str(upstream_repo)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False"]

