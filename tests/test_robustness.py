"""Bad input as a user meets it (issue 12): every class of bad input gets one line on stderr naming the fix and the
documented exit code, nothing is created before the input is checked, and nothing already measured is lost."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli import REPO, cli, one_error_line

TINY = (REPO / "harness" / "presets" / "tiny.toml").read_bytes()


def _nothing_written(root: Path) -> None:
    assert not root.exists() or not any(root.rglob("campaign.json")), list(root.rglob("*"))


# ---------------------------------------------------------------- 1. values that pass a check but are not usable

@pytest.mark.parametrize("args, needle", [
    (["--timeout", "nan"], "run_timeout_s=nan: must be a finite number"),
    (["--timeout", "inf"], "run_timeout_s=inf: must be a finite number"),
    (["--set", "warmdown_ratio=nan"], "warmdown_ratio=nan: must be a finite number"),
    (["--set", "final_lr_frac=-inf"], "final_lr_frac=-inf: must be a finite number"),
    (["--set", "seeds=[1, nan]"], "seeds=[1, nan]: must be a non-empty list of whole numbers"),
    (["--set", "depth=2.5"], "depth=2.5: must be a whole number"),
])
def test_non_numbers_are_refused_before_a_campaign_exists(tmp_path, args, needle):
    out = tmp_path / "out"
    proc = cli("run", "--preset", "tiny", "--impl", "ours", "--out", str(out), *args)
    assert proc.returncode == 2, proc.stderr
    assert needle in one_error_line(proc)
    _nothing_written(out)


@pytest.mark.parametrize("k", ["nan", "inf", "-1"])
def test_nightly_rule_must_be_finite_before_anything_runs(tmp_path, k):
    out = tmp_path / "out"
    proc = cli("nightly", "--preset", "tiny", "--impl", "ours", "--out", str(out), "--k", k)
    assert proc.returncode == 2, proc.stderr
    assert "need a finite k > 0" in one_error_line(proc)
    _nothing_written(out)


@pytest.mark.parametrize("text, needle", [
    (b"budget = 5\n", "'budget' must be a table"),
    (b'budget = "tiny"\n', "'budget' must be a table"),
    (b'command = "echo hi"\n' + TINY, "'command' must be a table"),
    (TINY + b'[command]\ntemplate = 5\n', "[command] template = 5 must be a string"),
    (TINY + b'[command]\ntemplate = "python t.py"\nname = ["a"]\n', "[command] name = ['a'] must be a string"),
    (b'name = "x"\ndepth = "\xff\xfe"\n', "not UTF-8 text"),
    (b"depth = \n", "not valid TOML"),
])
def test_wrong_toml_types_name_the_file_and_the_fix(tmp_path, text, needle):
    toml = tmp_path / "budget.toml"
    toml.write_bytes(text)
    out = tmp_path / "out"
    proc = cli("run", "--budget-toml", str(toml), "--impl", "command", "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert needle in line and str(toml) in line
    _nothing_written(out)


def test_a_directory_as_budget_file_is_one_line(tmp_path):
    proc = cli("run", "--budget-toml", str(tmp_path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    assert "is a directory, not a budget file" in one_error_line(proc)
