"""upstream/revision.py reads a revision's needs, flags, layout, log grammar and schedule from its files, and refuses
in one line what the harness cannot bridge. Small revisions written here (our own minimal files, not upstream's),
plus upstream's real history read with ``git show`` where a local source is reachable (skipped otherwise)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from protocol.events import EvalEvent
from upstream import revision
from upstream.logparse import LogParser
from upstream.run import UpstreamLaunch
from upstream.source import ENV_SOURCE

SCHEDULE = '''
def get_lr_multiplier(it):
    warmup = args.warmup_steps
    if it < warmup:
        return (it + 1) / warmup
    tail = round(args.warmdown_ratio * num_iterations)
    if tail == 0 or it <= num_iterations - tail:
        return 1.0
    left = (num_iterations - it) / tail
    return left + (1 - left) * args.final_lr_frac
'''
STEP_PRINT = 'print(f"step {s:05d}/{n:05d} | loss: {x:.6f} | lrm: {m:.2f} | dt: {d:.2f}ms | tok/sec: {t:,}")\n'
EVAL_PRINT = 'print(f"Step {s:05d} | Validation bpb: {b:.6f}")\n'
FLAT_DATASET = 'import os\nbase_dir = "x"\nDATA_DIR = os.path.join(base_dir, "base_data_climbmix")\n'
FLAT_TOKENIZER = 'import os\ndef get_tokenizer():\n    return os.path.join(get_base_dir(), "tokenizer")\n'


def _train(flags=revision.BUDGET_FLAGS + revision.RUN_FLAGS, sep="-", imports="", schedule=SCHEDULE,
           step=STEP_PRINT, evaluation=EVAL_PRINT) -> str:
    adds = "".join(f'parser.add_argument("--{f.replace("-", sep)}")\n' for f in flags)
    return f"import argparse\n{imports}parser = argparse.ArgumentParser()\n{adds}{schedule}\n{step}{evaluation}"


def _files(**over) -> dict:
    files = {"scripts/base_train.py": _train(), "scripts/tok_train.py": "import argparse\n",
             "nanochat/dataset.py": FLAT_DATASET, "nanochat/tokenizer.py": FLAT_TOKENIZER,
             "pyproject.toml": '[project]\nname = "x"\ndependencies = ["numpy>=1"]\n'}
    files.update(over)
    return files


def _read(files: dict) -> revision.Revision:
    return revision.read_from(files.get, "1a2b3c4d5e6f")


def test_a_revision_like_the_pin_has_nothing_to_refuse_or_adapt():
    rev = _read(_files())
    assert rev.refusal() is None and rev.adaptations == ()
    assert rev.layout.data == "base_data_climbmix" and rev.layout.tokenizer == "tokenizer"
    assert rev.log_grammar == {"step": "prose", "eval": "prose"} and rev.schedule == "linear"
    assert rev.record()["dependencies"]["declared"] == ["numpy>=1"]


def test_a_module_level_import_this_interpreter_lacks_is_refused_naming_the_pip_command():
    files = _files(**{"nanochat/gpt.py": "import nanochat_bench_absent_pkg\n",
                      "scripts/base_train.py": _train(imports="from nanochat.gpt import GPT\n")})
    line = _read(files).refusal()
    assert line.startswith("upstream 1a2b3c4 needs `nanochat_bench_absent_pkg` (not installed)")
    assert line.endswith("-m pip install nanochat_bench_absent_pkg") and "\n" not in line


def test_an_optional_or_function_level_import_is_not_required():
    optional = "try:\n    import nanochat_bench_absent_pkg\nexcept ImportError:\n    pass\n" \
               "def f():\n    import nanochat_bench_other_absent\n"
    assert _read(_files(**{"scripts/tok_train.py": optional})).refusal() is None


def test_a_declared_dependency_not_installed_is_recorded_but_not_refused():
    files = _files(**{"pyproject.toml": '[project]\ndependencies = ["nanochat-bench-absent>=1", "numpy"]\n'})
    rev = _read(files)
    assert rev.refusal() is None and rev.dependencies.declared_absent == ("nanochat-bench-absent",)


def test_a_missing_schedule_flag_is_refused_saying_the_swap_cannot_be_verified():
    flags = [f for f in revision.BUDGET_FLAGS + revision.RUN_FLAGS if f != "warmup-steps"] + ["warmup-ratio"]
    line = _read(_files(**{"scripts/base_train.py": _train(flags=flags)})).refusal()
    assert "has no --warmup-steps flag (it has --warmup-ratio): the 1-sqrt swap cannot be verified" in line


def test_underscore_flags_are_adapted_and_spelled_so_on_the_command_line(tmp_path):
    rev = _read(_files(**{"scripts/base_train.py": _train(sep="_")}))
    assert rev.refusal() is None and rev.spelling["num-iterations"] == "num_iterations"
    launch = UpstreamLaunch(checkout=tmp_path, base_dir=tmp_path, run_dir=tmp_path / "run",
                            flags={"num-iterations": 10, "device-type": "cpu"},
                            spelling={k: v for k, v in rev.spelling.items() if k != v})
    cmd = launch.command()
    assert "--num_iterations=10" in cmd and "--model_tag=" + launch.model_tag in cmd and "--run=dummy" in cmd


def test_a_changed_schedule_is_refused():
    changed = SCHEDULE.replace("(it + 1) / warmup", "(it + 2) / warmup")
    line = _read(_files(**{"scripts/base_train.py": _train(schedule=changed)})).refusal()
    assert "the 1-sqrt swap cannot be verified" in line


def test_a_step_line_without_lrm_is_refused_because_the_budget_cannot_be_audited():
    line = _read(_files(**{"scripts/base_train.py": _train(step='print(f"step {s} | loss: {x}")\n')})).refusal()
    assert "the budget cannot be audited" in line


def test_the_experiment_layout_and_eval_records_are_adapted(tmp_path):
    files = _files(**{
        "nanochat/dataset.py": 'import os\nCANONICAL_DATASET = "climbmix"\n'
                               'def get_dataset_dir(name=None):\n'
                               '    return os.path.join(get_base_dir(), "datasets", name)\n',
        "nanochat/tokenizer.py": 'import os\ndef get_tokenizer_dir():\n'
                                 '    return os.path.join(get_experiment_dir(), "tokenizer")\n',
        "nanochat/common.py": 'import os\ndef get_experiment_dir():\n'
                              '    return os.path.join(get_base_dir(), "experiments", "x")\n',
        "scripts/base_train.py": _train(evaluation='print(format_record("eval", step=s, val_bpb=b))\n'
                                        'd = get_checkpoint_dir(tag, "base")\n')})
    rev = _read(files)
    assert rev.refusal() is None and rev.log_grammar["eval"] == "records"
    assert (rev.layout.data, rev.layout.tokenizer) == ("datasets/climbmix", "experiments/default/tokenizer")
    for name in ("base_data_climbmix", "tokenizer"):
        (tmp_path / "ws" / name).mkdir(parents=True)
    launch = UpstreamLaunch(checkout=tmp_path, base_dir=tmp_path / "ws", run_dir=tmp_path / "run",
                            flags={"device-type": "cpu"}, layout=rev.layout)
    launch.prepare()
    assert (launch.run_base_dir / "datasets/climbmix").resolve() == (tmp_path / "ws/base_data_climbmix").resolve()
    assert (launch.run_base_dir / "experiments/default/tokenizer").is_dir()
    assert launch.env({})["NANOCHAT_EXPERIMENT"] == "default"
    assert launch.checkpoint_dir == launch.run_base_dir / "experiments/default" / launch.model_tag / "base"


def test_an_unknown_data_layout_is_refused():
    line = _read(_files(**{"nanochat/dataset.py": "DATA = 'somewhere'\n"})).refusal()
    assert "reads data or its tokenizer from a place the harness does not know" in line


def test_eval_records_become_eval_events():
    parser = LogParser()
    events = parser.feed("eval step=5 eflops=0.0 val_bpb=3.25")
    assert isinstance(events[0], EvalEvent) and events[0].step == 5 and events[0].val_bpb == 3.25


# --- upstream's real history, read with git show -------------------------------------------------------------

def _local_source() -> Path:
    src = os.environ.get(ENV_SOURCE, "")
    if not src or "://" in src or not Path(src).exists():
        pytest.skip(f"no local upstream source: set {ENV_SOURCE} to a local clone or mirror of karpathy/nanochat")
    return Path(src)


def _has(repo: Path, rev: str) -> bool:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                          capture_output=True).returncode == 0


def _rev(rev: str) -> revision.Revision:
    repo = _local_source()
    if not _has(repo, rev):
        pytest.skip(f"{rev} is not in {repo}")
    return revision.read_git(repo, rev)


def test_the_pinned_commit_reads_as_the_flat_layout_with_prose_lines_and_the_linear_schedule():
    rev = _rev("92d63d4e8bb4df75c3b71618f31ddde2378b2bcd")
    assert rev.layout.name == "flat" and rev.log_grammar == {"step": "prose", "eval": "prose"}
    assert rev.schedule == "linear" and "--warmup-steps" in rev.flags and "tokenizers" not in rev.dependencies.imported


def test_master_before_july_imports_tokenizers_and_january_master_has_warmup_ratio():
    assert "tokenizers" in _rev("dc54a1a").dependencies.imported
    january = _rev("3c3a3d7")
    assert "--warmup-ratio" in january.flags and january.layout.data == "base_data"
    assert "has no --warmup-steps flag (it has --warmup-ratio)" in january.refusal()


def test_the_experiment_refactor_branch_reads_as_the_experiment_layout_with_eval_records():
    rev = _rev("e4286f8")
    assert rev.layout.name == "experiment" and rev.log_grammar["eval"] == "records"
    assert rev.layout.checkpoints == "experiments/default/{tag}/base" and rev.schedule == "linear"


# --- the compatibility table (docs/upstream-compat.md), run for real -------------------------------------------

# every revision of the table: full SHA of upstream master (and one experiment branch) over its last six months
COMPAT_TABLE = ["92d63d4e8bb4df75c3b71618f31ddde2378b2bcd", "a5a3a33", "f10bd75", "dc54a1a", "8ef90bc", "6ed7d1d",
                "3c3a3d7", "e4286f8", "3a76bb9"]


@pytest.mark.upstream
@pytest.mark.slow
@pytest.mark.parametrize("rev", COMPAT_TABLE)
def test_tiny_budget_at_each_table_revision_completes_matched_or_is_refused_before_anything_runs(
        rev, tmp_path, workspace, compile_cache):
    import sys
    from harness.results import Campaign
    from tests.test_e2e_campaign import REPO
    read = _rev(rev)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--preset", "tiny", "--impl", "upstream",
                           "--upstream", str(_local_source()), "--upstream-ref", read.sha, "--out", str(tmp_path),
                           "--campaign-id", "c", "--workspace", str(tmp_path / "ws" if read.refusal() else workspace),
                           "--compile-cache", str(compile_cache), "--timeout", "900", "--quiet"],  # cold compile under load
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    if read.refusal():
        assert proc.returncode == 2 and proc.stderr.strip().endswith(read.refusal()), proc.stderr
        assert not (tmp_path / "c").exists() and not (tmp_path / "ws").exists()  # no campaign, no data prepared
        return
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (result,) = Campaign.load(tmp_path / "c").results(tmp_path / "c")
    assert result.status == "ok" and result.audit == [] and result.valid_for_parity
    assert result.provenance.upstream_revision["sha"] == read.sha


def test_nightly_reports_an_upstream_change_with_its_own_exit_code_before_running(tmp_path, monkeypatch, capsys):
    from harness import campaign
    from harness.cli import main
    from harness.nightly import EXIT_REGRESSED, EXIT_RUNS_FAILED, EXIT_UPSTREAM_CHANGED

    def refuse(setup):
        raise revision.UpstreamChanged("upstream 1a2b3c4 needs `tokenizers` (not installed): pip install tokenizers")
    monkeypatch.setattr(campaign, "start", refuse)
    code = main(["nightly", "--preset", "tiny", "--impl", "upstream", "--out", str(tmp_path),
                 "--db", str(tmp_path / "h.sqlite")])
    assert code == EXIT_UPSTREAM_CHANGED and code not in (EXIT_REGRESSED, EXIT_RUNS_FAILED, 2)
    assert "UPSTREAM CHANGED upstream 1a2b3c4 needs `tokenizers`" in capsys.readouterr().out
