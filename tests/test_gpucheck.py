"""The prepared GPU check: the pack built on this CPU machine, its dry run walking the GPU path up to the first CUDA
call, one-line errors for a missing pack or a machine without CUDA, and the plain-text summary."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.gpucheck.check import OUT_FILES, overlay
from harness.gpucheck.pack import LIMIT_BYTES, STANDIN_VERSION, tree_bytes, write_wandb_standin
from harness.gpucheck.summary import summary_text

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def gpucheck(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.gpucheck", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


# --- without a pack ----------------------------------------------------------------------------------------------

def test_a_missing_pack_is_one_line_naming_make_gpu_check_pack(tmp_path):
    r = gpucheck("check", "--out", str(tmp_path / "out"), "--pack", str(tmp_path / "nope"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "make gpu-check-pack" in r.stderr


def test_make_gpu_check_without_out_names_the_fix():
    r = subprocess.run(["make", "-s", "gpu-check", f"SYSTEM_PYTHON={sys.executable}"], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "OUT=" in r.stderr.splitlines()[0]


def test_overlay_adds_only_the_modules_this_interpreter_lacks(tmp_path, monkeypatch):
    (tmp_path / "site" / "absent" / "nanochat_bench_absent_mod").mkdir(parents=True)
    (tmp_path / "site" / "absent" / "nanochat_bench_absent_mod" / "__init__.py").write_text("X = 1\n")
    (tmp_path / "site" / "present").mkdir(parents=True)
    manifest = {"provides": {"absent": "nanochat_bench_absent_mod", "present": "json"},
                "site": {"absent": "site/absent", "present": "site/present"}}
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    added = overlay(tmp_path, manifest)
    assert added == [str((tmp_path / "site" / "absent").resolve())]
    assert os.environ["PYTHONPATH"] == os.pathsep.join(added + ["/elsewhere"])
    import nanochat_bench_absent_mod
    assert nanochat_bench_absent_mod.X == 1
    sys.modules.pop("nanochat_bench_absent_mod")


def test_the_wandb_stand_in_imports_says_what_it_is_and_fails_loudly_on_use(tmp_path):
    write_wandb_standin(tmp_path / "standin")
    code = ("import importlib.metadata, wandb\nprint(wandb.__version__, importlib.metadata.version('wandb'))\n"
            "try:\n    wandb.init(project='x')\nexcept RuntimeError as e:\n    print('refused:', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=str(tmp_path / "standin")))
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()
    assert first == f"{STANDIN_VERSION} {STANDIN_VERSION}"
    assert second.startswith("refused: wandb.init:") and "--run=dummy" in second


def test_the_summary_lists_every_run_with_its_figures_and_the_d12_step(tmp_path):
    text = summary_text(FIXTURES / "campaign_tiny")
    assert "runs: 4 ok of 4 planned" in text
    for run_id in ("01-ours-s42-r0", "02-upstream-s42-r0", "03-upstream-s42-r1", "04-ours-s42-r1"):
        assert f"{run_id}: ok" in text
    assert "tokens/s" in text and "torch peak allocated" in text and "throttle reasons seen" in text
    assert text.count("-> a d12 step of 524,288 tokens") == 2


# --- with a pack built here from upstream ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pack(upstream_repo, tmp_path_factory) -> Path:
    """A pack built as `make gpu-check-pack` does, upstream taken from $NANOCHAT_UPSTREAM (or the clone cache)."""
    root = tmp_path_factory.mktemp("gpu-pack")
    r = gpucheck("pack", "--pack", str(root / "pack"), "--upstream", str(upstream_repo),
                 "--upstream-cache", str(root / "cache"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "of the 64 MiB that may travel" in r.stdout
    return root / "pack"


@pytest.mark.upstream
def test_the_pack_holds_upstream_data_and_wheels_under_64_mib(pack):
    manifest = json.loads((pack / "manifest.json").read_text())
    assert tree_bytes(pack) < LIMIT_BYTES // 4
    assert set(manifest["provides"].values()) == {"git", "gitdb", "smmap", "rustbpe", "wandb"}
    for dist, module in manifest["provides"].items():
        assert (pack / manifest["site"][dist] / module).is_dir(), dist
    assert list((pack / "site" / "rustbpe").glob("rustbpe/*cpython-312-x86_64-linux-gnu.so"))
    assert (pack / manifest["data_dir"] / "tokenizer" / "tokenizer.pkl").is_file()
    shallow = subprocess.run(["git", "rev-list", "--count", "HEAD"], cwd=pack / "upstream.git", capture_output=True,
                             text=True)
    assert shallow.stdout.strip() == "1"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=pack / "upstream.git", capture_output=True, text=True)
    assert head.stdout.strip() == manifest["upstream_sha"]


@pytest.mark.upstream
def test_the_dry_run_walks_the_gpu_path_to_the_first_cuda_call_and_lists_the_runs(pack, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(["make", "-s", "gpu-check", f"SYSTEM_PYTHON={sys.executable}", f"PACK={pack}", f"OUT={out}",
                        f"ARGS=--dry-run --work {tmp_path / 'work'}"], cwd=REPO, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert any(ln.startswith("upstream: 92d63d4e8b") for ln in lines)
    assert any(ln.startswith("data: ") and ln.endswith("as packed") for ln in lines)
    assert any("stopping before the first CUDA call" in ln for ln in lines)
    assert any("-m harness run --preset gpu-smoke --gpu 0" in ln for ln in lines)
    runs = [ln.strip() for ln in lines if ln.strip()[:3] in ("01-", "02-", "03-", "04-")]
    assert [ln.split(":")[0] for ln in runs] == ["01-ours-s42-r0", "02-upstream-s42-r0", "03-upstream-s42-r1",
                                                 "04-ours-s42-r1"]
    assert all("--device-type=cuda" in ln and "--depth=12" in ln for ln in runs)
    assert "-m models.train" in runs[0] and "-m upstream.launch" in runs[1]
    assert (out / "gpu-check.log").read_text().splitlines() == lines
    assert sorted(p.name for p in out.iterdir()) == ["gpu-check.log"]


@pytest.mark.upstream
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the real check would run")
def test_a_real_run_without_cuda_stops_at_the_first_cuda_call_with_one_line(pack, tmp_path):
    r = gpucheck("check", "--pack", str(pack), "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "no CUDA device" in r.stderr and "--dry-run" in r.stderr


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.upstream
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_gpu_check_runs_both_arms_on_cuda_and_brings_back_its_six_files(pack, tmp_path):
    out = tmp_path / "out"
    r = gpucheck("check", "--pack", str(pack), "--out", str(out), "--work", str(tmp_path / "work"), timeout=900)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUT_FILES), r.stdout[-3000:]
    summary = (out / "summary.txt").read_text()
    assert r.returncode == 0 and "runs: 4 ok of 4 planned" in summary, summary
    campaign = json.loads((out / "campaign.json").read_text())
    assert campaign["machine"]["gpus"] and campaign["machine"]["peak_flops"]


def test_the_gpu_smoke_preset_has_the_d12_shape_a_few_dozen_steps_and_two_repeats_per_arm():
    from harness.budget import load_preset
    smoke, d12 = load_preset("gpu-smoke"), load_preset("d12")
    shape = ("depth", "max_seq_len", "window_pattern", "vocab_size", "device_batch_size", "aspect_ratio", "head_dim")
    assert all(getattr(smoke, k) == getattr(d12, k) for k in shape)
    assert (smoke.device, smoke.nproc_per_node, smoke.repeats) == ("cuda", 1, 2) and 24 <= smoke.iterations <= 60
    assert smoke.eval_tokens <= smoke.total_batch_size * 2 and smoke.run_timeout_s * 3 <= 600


def test_the_check_imports_nothing_the_gpu_machine_lacks_before_it_puts_the_pack_on_the_path():
    code = ("import sys, harness.gpucheck.__main__, harness.cli, harness.dataprep, upstream.errors\n"
            "print(sorted(m for m in ('git', 'gitdb', 'smmap', 'rustbpe', 'wandb', 'torch') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr
