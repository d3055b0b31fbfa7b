"""upstream.run: the command line and environment of a run, collecting its results, and a real 20-step run."""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import git
import pytest
import torch

from protocol.events import EvalEvent, FinalEvent, StepEvent, read_events
from upstream import run, source, verify, workspace
from upstream.errors import UpstreamError
from tests.helpers_upstream import run_to_end

FIXTURES = Path(__file__).parent / "fixtures" / "upstream_logs"
CPU_FLAGS = {"depth": 4, "max_seq_len": 256, "device_batch_size": 4, "total_batch_size": 1024, "num_iterations": 20,
             "eval_every": 10, "eval_tokens": 4096, "window_pattern": "L", "device_type": "cpu",
             "warmup_steps": 2, "warmdown_ratio": 0.5}  # short warmup: the 1-sqrt part shows in 20 steps


def _launch(tmp_path: Path, **kwargs) -> run.UpstreamLaunch:
    fields = dict(checkout=tmp_path / "clone", base_dir=tmp_path / "ws", run_dir=tmp_path / "run", flags=CPU_FLAGS)
    return run.UpstreamLaunch(**(fields | kwargs))


def test_flags_from_a_dict_are_spelled_like_base_train(tmp_path):
    flags = run.normalise_flags({"max_seq_len": 256, "fp8": True, "resume_from_step": None, "muon": False})
    assert flags == ["--max-seq-len=256", "--fp8"]
    assert run.normalise_flags(["--depth=4"]) == ["--depth=4"]


@pytest.mark.parametrize("flag", ["--run=x", "--model-tag=x", "--core_metric_every=5", "--sample-every=1"])
def test_flags_the_runner_owns_are_refused(flag):
    with pytest.raises(UpstreamError, match="is set by upstream/run.py itself"):
        run.normalise_flags([flag])


def test_a_flag_without_dashes_is_refused():
    with pytest.raises(UpstreamError, match="not of the form --name=value"):
        run.normalise_flags(["depth=4"])


def test_single_process_command_runs_launch_with_our_interpreter(tmp_path):
    launch = _launch(tmp_path, commit="abc")
    cmd = launch.command()
    assert cmd[:3] == [sys.executable, "-m", "upstream.launch"]
    assert cmd[cmd.index("--repo") + 1] == str((tmp_path / "clone").resolve())
    after = cmd[cmd.index("--") + 1:]
    assert "--depth=4" in after and "--run=dummy" in after and f"--model-tag={launch.model_tag}" in after
    assert "--core-metric-every=-1" in after and "--sample-every=-1" in after
    assert cmd[cmd.index("--warmdown-shape") + 1] == "sqrt" and cmd[cmd.index("--commit") + 1] == "abc"


def test_every_launch_gets_a_fresh_model_tag(tmp_path):
    assert _launch(tmp_path).model_tag != _launch(tmp_path).model_tag


def test_muon_weight_decay_off_is_passed_to_launch(tmp_path):
    assert "--muon-weight-decay-off" in _launch(tmp_path, muon_weight_decay_off=True).command()


def test_several_cuda_processes_go_through_torchrun_without_run(tmp_path):
    cmd = _launch(tmp_path, flags=dict(CPU_FLAGS, device_type="cuda"), nproc=8).command()
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8"]
    assert not any(c.startswith("--run") for c in cmd)


def test_several_cpu_processes_are_refused(tmp_path):
    with pytest.raises(UpstreamError, match="nproc=2 on cpu: upstream makes no process group"):
        _launch(tmp_path, nproc=2)


def test_environment_points_everything_away_from_the_clone(tmp_path):
    launch = _launch(tmp_path, cache_dir=tmp_path / "campaign", extra_env={"NANOCHAT_DTYPE": "float32"})
    env = launch.env({"PATH": "/bin", "PYTHONPATH": "/elsewhere"})
    campaign = (tmp_path / "campaign").resolve()
    assert env["NANOCHAT_BASE_DIR"] == str((tmp_path / "run" / "nanochat_base").resolve())
    assert env["TMPDIR"] == str(campaign / "tmp")
    assert Path(env["TORCHINDUCTOR_CACHE_DIR"]).parent == campaign / "inductor"
    assert env["TORCHINDUCTOR_COMPILE_THREADS"] == "1"
    assert env["WANDB_MODE"] == "disabled"
    assert "PYTHONPYCACHEPREFIX" not in env   # would hide the installed .pyc files from upstream only (launch.py)
    assert env["PYTHONPATH"] == f"{run.PROJECT_ROOT}:/elsewhere" and env["NANOCHAT_DTYPE"] == "float32"


def test_inductor_cache_is_kept_apart_per_aten_cpu_path(tmp_path):
    native = _launch(tmp_path, cache_dir=tmp_path / "c").env({"PATH": "/bin"})
    avx2 = _launch(tmp_path, cache_dir=tmp_path / "c", extra_env={"ATEN_CPU_CAPABILITY": "avx2"}).env({"PATH": "/bin"})
    default = _launch(tmp_path, cache_dir=tmp_path / "c").env({"PATH": "/bin", "ATEN_CPU_CAPABILITY": "default"})
    dirs = {native["TORCHINDUCTOR_CACHE_DIR"], avx2["TORCHINDUCTOR_CACHE_DIR"], default["TORCHINDUCTOR_CACHE_DIR"]}
    assert avx2["TORCHINDUCTOR_CACHE_DIR"].endswith(f"torch-{torch.__version__}-avx2")
    assert default["TORCHINDUCTOR_CACHE_DIR"].endswith("-default")
    assert len(dirs) == 3 or torch.backends.cpu.get_cpu_capability().lower() in ("avx2", "default")


def test_prepare_links_the_workspace_into_the_runs_base_dir(tmp_path):
    (tmp_path / "ws" / workspace.DATA_DIR).mkdir(parents=True)
    (tmp_path / "ws" / "tokenizer").mkdir()
    launch = _launch(tmp_path)
    launch.prepare()
    assert (launch.run_base_dir / workspace.DATA_DIR).resolve() == (tmp_path / "ws" / workspace.DATA_DIR).resolve()
    assert (launch.run_base_dir / "tokenizer").is_symlink()


def test_prepare_without_a_workspace_says_so(tmp_path):
    with pytest.raises(UpstreamError, match="prepare the workspace first"):
        _launch(tmp_path).prepare()


def _finished_run(tmp_path: Path, **kwargs) -> run.UpstreamLaunch:
    """A launch whose run dir holds a real captured log and checkpoint meta, as upstream leaves them."""
    launch = _launch(tmp_path, **kwargs)
    launch.checkpoint_dir.mkdir(parents=True)
    shutil.copy(FIXTURES / "cpu_d4_sqrt_20steps.log", launch.log_path)
    shutil.copy(FIXTURES / "cpu_d4_sqrt_20steps.meta.json", launch.checkpoint_dir / "meta_000020.json")
    (launch.checkpoint_dir / "model_000020.pt").write_bytes(b"weights")
    return launch


def test_collect_writes_events_and_deletes_the_checkpoint(tmp_path):
    launch = _finished_run(tmp_path)
    events = launch.collect()
    assert read_events(launch.events_path) == events
    assert not launch.checkpoint_dir.exists() and not launch.checkpoint_dir.parent.exists()
    final = events[-1]
    assert final.train_time_s == json.loads((FIXTURES / "cpu_d4_sqrt_20steps.meta.json").read_text())[
        "loop_state"]["total_training_time"]
    assert final.extra["model_tag"] == launch.model_tag and "checkpoint_dir" not in final.extra


def test_collect_keeps_the_checkpoint_when_asked(tmp_path):
    launch = _finished_run(tmp_path, keep_checkpoint=True)
    final = launch.collect()[-1]
    assert (launch.checkpoint_dir / "model_000020.pt").exists()
    assert final.extra["checkpoint_dir"] == str(launch.checkpoint_dir)


@pytest.mark.upstream
def test_twenty_step_cpu_run_of_upstream_end_to_end(upstream_repo, tmp_path):
    """Real upstream, embedded data, 1-sqrt swapped in: every record, the right trace, the pin, a clean clone."""
    from upstream.pin import PINNED_COMMIT
    base = workspace.prepare(workspace.DataSpec(), upstream_repo, tmp_path / "ws")
    compile_cache = source.cache_root() / "test-compile-cache"  # warm after the first run (~37 s cold compile)
    launch = run.UpstreamLaunch(upstream_repo, base, tmp_path / "run", CPU_FLAGS, cache_dir=compile_cache,
                                commit=PINNED_COMMIT)
    start = time.monotonic()
    events = run_to_end(launch)
    print(f"\n20-step upstream run: {time.monotonic() - start:.1f} s wall, "
          f"median {sorted(e.tokens_per_s for e in events if isinstance(e, StepEvent))[10]:.0f} tok/s")
    assert read_events(launch.events_path) == events
    assert [e.step for e in events if isinstance(e, StepEvent)] == list(range(20))
    assert [e.step for e in events if isinstance(e, EvalEvent)] == [0, 10, 20]
    assert isinstance(events[-1], FinalEvent) and events[-1].param_counts["total"] == 7_340_114
    assert verify.mismatches(events, verify.Expected.from_flags(run.normalise_flags(CPU_FLAGS), "sqrt")) == []
    assert verify.mismatches(events, verify.Expected.from_flags(run.normalise_flags(CPU_FLAGS), "linear"))
    assert git.Repo(upstream_repo).head.commit.hexsha == PINNED_COMMIT
    assert source.is_clean(upstream_repo)
    assert not launch.checkpoint_dir.exists()
