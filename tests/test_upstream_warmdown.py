"""The run-time schedule swap, on a small base_train-like script of our own, and through upstream.launch."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from upstream import warmdown
from upstream.errors import UpstreamError
from upstream.run import PROJECT_ROOT

SCRIPT = textwrap.dedent('''
    import argparse, os
    parser = argparse.ArgumentParser()
    parser.add_argument("--num-iterations", type=int, default=12)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--warmdown-ratio", type=float, default=0.5)
    parser.add_argument("--final-lr-frac", type=float, default=0.0)
    parser.add_argument("--fail", action="store_true")
    args = parser.parse_args()
    num_iterations = args.num_iterations
    base_wd = 0.2

    def get_lr_multiplier(it):
        ramp = args.warmup_steps
        tail = round(args.warmdown_ratio * num_iterations)
        if it < ramp:
            return (it + 1) / ramp
        if it <= num_iterations - tail:
            return 1.0
        left = (num_iterations - it) / tail
        return left + (1 - left) * args.final_lr_frac

    def get_weight_decay(it):
        return base_wd * (1 - it / num_iterations)

    if args.fail:
        raise RuntimeError("failing on purpose")
    print("where", __name__, __file__, os.getcwd())
    for step in range(num_iterations):
        print("lrm", step, repr(get_lr_multiplier(step)), "wd", repr(get_weight_decay(step)))
''')


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "base_train.py").write_text(SCRIPT)
    return tmp_path


def _launch(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    return subprocess.run([sys.executable, "-m", "upstream.launch", "--repo", str(repo), *args], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def _trace(stdout: str) -> tuple[list[float], list[float]]:
    rows = [line.split() for line in stdout.splitlines() if line.startswith("lrm ")]
    return [float(r[2]) for r in rows], [float(r[4]) for r in rows]


def test_closed_form_values_by_hand():
    # N=20, warmdown round(0.5*20)=10 steps; step 11 is 1/10 into it: 0.05 + 0.95 * (1 - sqrt(0.1))
    assert warmdown.lr_multiplier(11, 20, 2, 0.5, 0.05, "sqrt") == pytest.approx(0.05 + 0.95 * (1 - math.sqrt(0.1)))
    assert warmdown.lr_multiplier(11, 20, 2, 0.5, 0.05, "linear") == pytest.approx(0.05 + 0.95 * 0.9)
    assert warmdown.lr_multiplier(10, 20, 2, 0.5, 0.05, "sqrt") == 1.0
    assert warmdown.lr_multiplier(0, 20, 40, 0.5, 0.05, "sqrt") == 1 / 40  # warmup wins over the warmdown
    assert warmdown.lr_multiplier(20, 20, 2, 0.5, 0.05, "sqrt") == pytest.approx(0.05)


def test_closed_form_agrees_with_our_models_schedule():
    schedule = pytest.importorskip("models.schedule")
    for shape in warmdown.SHAPES:
        for n, warmup, ratio, final in [(20, 2, 0.5, 0.05), (150, 10, 0.65, 0.0), (9, 40, 0.3, 0.1)]:
            for it in range(n + 1):
                assert warmdown.lr_multiplier(it, n, warmup, ratio, final, shape) == pytest.approx(
                    schedule.lr_multiplier(it, n, warmup, ratio, final, shape), abs=1e-12)


def test_launch_swaps_in_the_sqrt_warmdown(repo: Path):
    result = _launch(repo, "--warmdown-shape", "sqrt", "--", "--num-iterations=12", "--final-lr-frac=0.05")
    assert result.returncode == 0, result.stderr
    lrm, wd = _trace(result.stdout)
    assert lrm == pytest.approx([warmdown.lr_multiplier(i, 12, 2, 0.5, 0.05, "sqrt") for i in range(12)], abs=1e-12)
    assert wd == pytest.approx([0.2 * (1 - i / 12) for i in range(12)])  # weight decay untouched


def test_linear_shape_leaves_the_script_schedule_alone(repo: Path):
    lrm, _ = _trace(_launch(repo, "--warmdown-shape", "linear", "--", "--final-lr-frac=0.05").stdout)
    assert lrm == pytest.approx([warmdown.lr_multiplier(i, 12, 2, 0.5, 0.05, "linear") for i in range(12)])
    assert lrm[9] != pytest.approx(warmdown.lr_multiplier(9, 12, 2, 0.5, 0.05, "sqrt"))


def test_muon_weight_decay_off_makes_every_weight_decay_zero(repo: Path):
    _, wd = _trace(_launch(repo, "--warmdown-shape", "sqrt", "--muon-weight-decay-off").stdout)
    assert wd == [0.0] * 12


def test_script_runs_as_main_from_its_clone_under_its_real_name(repo: Path):
    before = (repo / "scripts" / "base_train.py").read_bytes()
    where = [line.split() for line in _launch(repo).stdout.splitlines() if line.startswith("where ")][0]
    assert where[1:] == ["__main__", str((repo / "scripts" / "base_train.py").resolve()), str(repo.resolve())]
    assert (repo / "scripts" / "base_train.py").read_bytes() == before
    assert sorted(p.name for p in repo.rglob("*")) == ["base_train.py", "scripts"]  # no __pycache__ either


def test_tracebacks_point_into_the_real_script(repo: Path):
    result = _launch(repo, "--", "--fail")
    assert result.returncode != 0
    line = SCRIPT.splitlines().index('    raise RuntimeError("failing on purpose")') + 1
    assert f'File "{(repo / "scripts" / "base_train.py").resolve()}", line {line}' in result.stderr


def test_launch_is_what_torchrun_starts_on_every_rank(repo: Path):
    # each rank's stdout to its own file (torchrun --redirects): on one shared pipe two ranks' lines can interleave
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    logs = repo / "rank-logs"
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "--log-dir", str(logs), "--redirects", "1",
                             "-m", "upstream.launch", "--repo", str(repo), "--warmdown-shape", "sqrt", "--",
                             "--num-iterations=4", "--final-lr-frac=0.05"],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    per_rank = sorted(logs.rglob("stdout.log"))
    assert len(per_rank) == 2, per_rank
    expected = [warmdown.lr_multiplier(i, 4, 2, 0.5, 0.05, "sqrt") for i in range(4)]
    for path in per_rank:
        lrm, _ = _trace(path.read_text())
        assert lrm == pytest.approx(expected), path


def test_launch_reports_a_broken_swap_in_one_line(repo: Path):
    (repo / "scripts" / "base_train.py").write_text(SCRIPT.replace("def get_lr_multiplier", "def lr_schedule"))
    result = _launch(repo, "--commit", "feedbeef")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "0 top-level 'get_lr_multiplier'" in result.stderr
    assert "feedbeef" in result.stderr


def test_two_definitions_are_refused():
    with pytest.raises(UpstreamError, match=r"at abc1234 has 2 top-level 'get_lr_multiplier'"):
        warmdown.swap(SCRIPT + SCRIPT[SCRIPT.index("def get_lr"):], "base_train.py", "sqrt", where="abc1234")


def test_missing_weight_decay_function_is_refused_only_when_asked_to_swap_it():
    script = SCRIPT.replace("def get_weight_decay", "def muon_wd")
    warmdown.swap(script, "base_train.py", "sqrt")
    with pytest.raises(UpstreamError, match="0 top-level 'get_weight_decay'"):
        warmdown.swap(script, "base_train.py", "sqrt", muon_weight_decay_off=True)


def test_a_schedule_reading_other_settings_is_refused():
    changed = SCRIPT.replace("args.final_lr_frac", "args.min_lr_frac")
    with pytest.raises(UpstreamError, match=r"reads .*args.min_lr_frac.*schedule changed"):
        warmdown.swap(changed, "base_train.py", "sqrt", where="abc1234")


def test_a_schedule_with_a_different_warmup_is_refused():
    changed = SCRIPT.replace("return (it + 1) / ramp", "return it / ramp")
    with pytest.raises(UpstreamError, match="no longer matches the linear"):
        warmdown.swap(changed, "base_train.py", "sqrt")


def test_unknown_shape_is_refused():
    with pytest.raises(UpstreamError, match="warmdown shape 'cosine' is unknown"):
        warmdown.swap(SCRIPT, "base_train.py", "cosine")


@pytest.mark.upstream
def test_upstream_base_train_at_the_pin_accepts_the_swap(upstream_repo: Path):
    source = (upstream_repo / "scripts" / "base_train.py").read_text()
    tree = warmdown.swap(source, "base_train.py", "sqrt", muon_weight_decay_off=True, where="pin")
    compile(tree, "base_train.py", "exec")
