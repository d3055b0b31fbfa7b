"""Bad input as a user meets it (issue 12): every class of bad input gets one line on stderr naming the fix and the
documented exit code, nothing is created before the input is checked, and nothing already measured is lost."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.test_cli import REPO, cli, command_run, one_error_line

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


# ---------------------------------------------------------------- a finished campaign to damage (copied per test)

@pytest.fixture(scope="module")
def finished(tmp_path_factory, workspace) -> Path:
    """ROOT with one finished, ok campaign ROOT/c1 of the command arm (the tiny test trainer), and its history."""
    base = tmp_path_factory.mktemp("finished")
    proc = cli(*command_run(base, workspace, ), "--campaign-id", "c1", timeout=300)
    assert proc.returncode == 0, proc.stderr
    return base / "out"


@pytest.fixture
def root(finished, tmp_path) -> Path:
    dst = tmp_path / "out"
    shutil.copytree(finished, dst, symlinks=True)
    return dst


def _edit(path: Path, change) -> None:
    d = json.loads(path.read_text())
    change(d)
    path.write_text(json.dumps(d))


RESULT = "runs/01-command-toy-s42-r0/result.json"


# ---------------------------------------------------------------- 2. identifiers used as paths, files read from files

@pytest.mark.parametrize("cid", ["../../escaped", "a/b", "..", "/tmp/abs-campaign", ".hidden", "a b"])
def test_campaign_id_is_one_name(tmp_path, cid):
    out = tmp_path / "deep" / "out"
    proc = cli("run", "--preset", "tiny", "--impl", "ours", "--out", str(out), "--campaign-id", cid)
    assert proc.returncode == 2, proc.stderr
    assert f"--campaign-id {cid!r}: use one name" in one_error_line(proc)
    assert not any(tmp_path.rglob("campaign.json")) and not Path("/tmp/abs-campaign").exists()
    assert not (tmp_path / "escaped").exists()


@pytest.mark.parametrize("field, value, needle", [
    ("telemetry_path", "../../../../outside.txt", "telemetry_path '../../../../outside.txt' is not a relative path"),
    ("log_path", "/etc/hostname", "log_path '/etc/hostname' must be a relative path"),
])
def test_report_out_never_copies_from_outside_the_campaign(root, tmp_path, field, value, needle):
    (tmp_path / "outside.txt").write_text("secret")
    _edit(root / "c1" / RESULT, lambda d: d.__setitem__(field, value))
    pub = tmp_path / "pub" / "c1"
    proc = cli("report", str(root / "c1"), "--out", str(pub), "--no-history")
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert field in line and "result.json" in line
    assert not any(p.read_bytes() == b"secret" for p in tmp_path.rglob("*") if p.is_file() and p.name != "outside.txt")


def test_a_symlink_out_of_the_campaign_is_not_followed(root, tmp_path):
    (tmp_path / "outside.txt").write_text("secret")
    tele = root / "c1" / "runs" / "01-command-toy-s42-r0" / "telemetry.jsonl"
    tele.unlink()
    tele.symlink_to(tmp_path / "outside.txt")
    proc = cli("report", str(root / "c1"), "--out", str(tmp_path / "pub" / "c1"), "--no-history")
    assert proc.returncode == 2, proc.stderr
    assert "leads out of" in one_error_line(proc)
    assert not any(p.read_bytes() == b"secret" for p in (tmp_path / "pub").rglob("*") if p.is_file())


def test_a_result_path_out_of_the_campaign_is_refused(root):
    _edit(root / "c1" / "campaign.json", lambda d: d["runs"][0].__setitem__("result_path", "../../../etc/passwd"))
    proc = cli("report", str(root / "c1"), "--no-history")
    assert proc.returncode == 2, proc.stderr
    assert "campaign.json" in one_error_line(proc) and "result_path" in one_error_line(proc)
