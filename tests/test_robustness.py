"""Bad input as a user meets it (issue 12): every class of bad input gets one line on stderr naming the fix and the
documented exit code, nothing is created before the input is checked, and nothing already measured is lost."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.report import findings as findings_record
from harness.readme import findings_block
from harness.results import Campaign, RunResult
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


def _starts(root: Path) -> int:
    """How many times the trainer of ROOT/c1 has started (its --calls-file, named in the recorded template)."""
    template = json.loads((root / "c1" / "campaign.json").read_text())["arms"]["command:toy"]["template"]
    calls = Path(template.split("--calls-file ")[1].split()[0])
    return calls.read_text().count("\n") if calls.exists() else 0


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


# ---------------------------------------------------------------- 3. one bad file must not break everything

@pytest.mark.parametrize("text", [b"[]", b'{"schema_version": 1, "campaign_id": "x", "preset": "p", "budget": {}, '
                                        b'"runs": "oops"}', b'{"schema_version": 1, "runs": [1]}', b"\xff\xfe", b"{"])
def test_list_shows_every_readable_campaign_beside_a_broken_one(root, text):
    (root / "broken").mkdir()
    (root / "broken" / "campaign.json").write_bytes(text)
    proc = cli("list", "--out", str(root))
    assert proc.returncode == 0, proc.stderr
    assert "c1 " in proc.stdout and "complete: 1 ok" in proc.stdout
    assert "broken" in proc.stdout and "unreadable" in proc.stdout


@pytest.mark.parametrize("text, needle", [(b"[]", "campaign is list, not a JSON object"),
                                          (b'{"schema_version": 1, "campaign_id": "c1", "preset": "tiny", '
                                           b'"budget": {}, "runs": "oops"}', "Campaign.runs = 'oops' should be a list")])
def test_resume_of_a_damaged_campaign_json_is_one_line(root, text, needle):
    (root / "c1" / "campaign.json").write_bytes(text)
    proc = cli("run", "--resume", str(root / "c1"))
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert needle in line and "campaign.json" in line


@pytest.mark.parametrize("damage", ["truncate", "events"])
def test_resume_reruns_an_ok_run_whose_files_are_damaged(root, damage):
    run = root / "c1" / "runs" / "01-command-toy-s42-r0"
    if damage == "truncate":
        (run / "result.json").write_text((run / "result.json").read_text()[:100])
    else:
        (run / "events.jsonl").write_text('{"event": "step", "step": 0')
    before = _starts(root)
    proc = cli("run", "--resume", str(root / "c1"), "--quiet", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "01-command-toy-s42-r0 was ok but" in proc.stdout
    assert RunResult.load(run / "result.json").ok
    assert _starts(root) == before + 1       # it really ran again


def test_resume_of_an_intact_campaign_runs_nothing(root):
    before = _starts(root)
    proc = cli("run", "--resume", str(root / "c1"), "--quiet", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert _starts(root) == before


def test_a_corrupt_history_db_is_said_before_anything_runs(root, workspace, tmp_path):
    (root / "history.sqlite").write_bytes(b"this is not sqlite" * 100)
    args = command_run(tmp_path, workspace)
    args[args.index("--out") + 1] = str(root)
    proc = cli(*args, "--campaign-id", "c2")
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert "history.sqlite: not a usable history database" in line and "move it away" in line
    assert not (root / "c2").exists() and not (tmp_path / "calls.txt").exists()
    assert Campaign.load(root / "c1").runs[0].status == "ok"


def test_nightly_with_a_corrupt_db_refuses_before_running(tmp_path):
    db = tmp_path / "h.sqlite"
    db.write_bytes(b"garbage" * 500)
    proc = cli("nightly", "--preset", "tiny", "--impl", "ours", "--out", str(tmp_path / "out"), "--db", str(db))
    assert proc.returncode == 2, proc.stderr
    assert f"{db}: not a usable history database" in one_error_line(proc)
    _nothing_written(tmp_path / "out")


def test_history_shows_a_campaign_without_upstream(root):
    proc = cli("history", "--db", str(root / "history.sqlite"))
    assert proc.returncode == 0, proc.stderr
    assert "c1" in proc.stdout and "command:toy" in proc.stdout


@pytest.mark.parametrize("text, needle", [(b"{", "unreadable (JSONDecodeError"), (b"[]", "not a JSON object"),
                                          (b'{"schema_version": 2}', "'campaign_id' is missing")])
def test_a_corrupt_report_json_is_one_line_naming_it(tmp_path, text, needle):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- findings:start -->\nkept\n<!-- findings:end -->\n")
    (tmp_path / "reports" / "a").mkdir(parents=True)
    (tmp_path / "reports" / "a" / "report.json").write_bytes(text)
    proc = cli("readme", "--readme", str(readme), "--reports", str(tmp_path / "reports"))
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert needle in line and "report.json" in line
    assert "kept" in readme.read_text()


# ---------------------------------------------------------------- 4. arm output is data, checked as such

BAD_ARM = r'''
import json, sys
flags = dict(a[2:].split("=", 1) for a in sys.argv[2:] if a.startswith("--") and "=" in a)
out, n, mode = flags["metrics-out"], int(flags["num-iterations"]), sys.argv[1]
steps = 3 if mode == "short" else n
with open(out, "a") as fh:
    for s in range(steps):
        loss = {"nanloss": "NaN", "strloss": '"high"'}.get(mode, "2.5")
        fh.write('{"event": "step", "step": %d, "loss": %s, "lrm": 1.0, "dt_s": 0.01, "tokens_per_s": 100.0}\n'
                 % (s, loss))
    bpb = {"nanbpb": "NaN", "strbpb": '"low"', "infbpb": "Infinity"}.get(mode, "2.0")
    fh.write('{"event": "eval", "step": %d, "val_bpb": %s, "eval_tokens": 512}\n' % (steps, bpb))
    fh.write('{"event": "final", "steps": %d, "tokens": %d, "train_time_s": 0.1}\n' % (steps, steps * 256))
'''


@pytest.mark.parametrize("mode, needle", [
    ("nanbpb", "val_bpb = nan must be a finite number"),
    ("strbpb", "val_bpb = 'low' must be a finite number"),
    ("infbpb", "val_bpb = inf must be a finite number"),
    ("nanloss", "loss = nan must be a finite number"),
    ("strloss", "loss = 'high' must be a finite number"),
    ("short", "trained 3 step(s) (final record says 3) of the budget's 10"),
])
def test_a_bad_arm_fails_its_own_run_and_the_campaign_goes_on(tmp_path, workspace, mode, needle):
    bad = tmp_path / "bad_arm.py"
    bad.write_text(BAD_ARM)
    out = tmp_path / "out"
    proc = cli("run", "--preset", "tiny", "--impl", "command", "--command", f"{{python}} {bad} {mode}",
               "--out", str(out), "--campaign-id", "c", "--workspace", str(workspace), "--quiet", "--repeats", "2")
    assert proc.returncode == 1, proc.stderr                     # 1: some runs did not end ok
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    campaign = Campaign.load(out / "c")
    assert [r.status for r in campaign.runs] == ["failed", "failed"]   # the second run was still started
    for r in campaign.results(out / "c"):
        assert needle in r.error


# ---------------------------------------------------------------- 5. inputs checked when given, not at launch

@pytest.mark.parametrize("template, needle", [
    ('{python} "t.py', "No closing quotation"),
    ('echo {"a":1}', "placeholder {a:1} is not one of"),
    ("echo {seed.__class__.__name__}", "placeholder {seed.__class__.__name__} is not one of"),
    ("echo {seed[0]}", "placeholder {seed[0]} is not one of"),
    ("echo {seed!r}", "placeholder {seed!r} is not one of"),
    ("echo }", "Single '}' encountered"),
])
def test_a_bad_command_template_is_refused_before_a_campaign_exists(tmp_path, template, needle):
    out = tmp_path / "out"
    proc = cli("run", "--preset", "tiny", "--impl", "command", "--command", template, "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert needle in one_error_line(proc)
    _nothing_written(out)


@pytest.mark.parametrize("option", ["--out", "--workspace", "--compile-cache", "--upstream-cache"])
def test_a_file_where_a_folder_belongs_is_refused_before_a_campaign_exists(tmp_path, option):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    out = tmp_path / "out"
    args = ["run", "--preset", "tiny", "--impl", "ours", "--out", str(out), option, str(a_file / "sub")]
    if option == "--out":
        args[args.index("--out") + 1] = str(a_file)
        args = args[:-2]
    proc = cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert f"{option} " in one_error_line(proc) and "is a file, not a directory" in one_error_line(proc)
    assert not any(tmp_path.rglob("campaign.json"))


# ---------------------------------------------------------------- 6. typos that destroy work, silent surprises

def test_readme_with_a_mistyped_reports_folder_keeps_the_findings(tmp_path):
    readme = tmp_path / "README.md"
    text = "# x\n<!-- findings:start -->\n| our findings |\n<!-- findings:end -->\n"
    readme.write_text(text)
    proc = cli("readme", "--readme", str(readme), "--reports", str(tmp_path / "reprots"))
    assert proc.returncode == 2, proc.stderr
    assert "--reports" in one_error_line(proc) and "no such folder" in one_error_line(proc)
    assert readme.read_text() == text


@pytest.mark.parametrize("verb", ["run", "benchmark"])
@pytest.mark.parametrize("args", [["--upstream", "somewhere"], ["--upstream-ref", "main"], ["--preset", "smoke"],
                                  ["--set", "depth=3"], ["--repeats", "5"], ["--impl", "ours"],
                                  ["--campaign-id", "other"], ["--command", "echo {python}"], ["--timeout", "9"]])
def test_options_a_resume_cannot_honour_are_refused_not_ignored(root, verb, args):
    before = _starts(root)
    proc = cli(verb, "--resume", str(root / "c1"), *args)
    assert proc.returncode == 2, proc.stderr
    assert f"{args[0]} with --resume" in one_error_line(proc)
    assert _starts(root) == before


PUBLISHED = REPO / "reports" / "20261202-162713-smoke"     # a published copy: its upstream source is hidden


@pytest.fixture
def published(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("NANOCHAT_UPSTREAM", raising=False)
    cdir = tmp_path / "reports" / PUBLISHED.name
    shutil.copytree(PUBLISHED, cdir)
    assert Campaign.load(cdir).arms["upstream"]["source"] == "<upstream source>"
    return cdir


@pytest.mark.parametrize("verb", ["run", "benchmark"])
def test_resume_of_a_published_copy_whose_runs_are_ok_needs_no_upstream(published, verb):
    before = (published / "campaign.json").read_bytes()
    (published / "report.md").unlink()
    proc = cli(verb, "--resume", str(published), "--quiet", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "campaign 20261202-162713-smoke: 8 ok" in proc.stdout
    assert (published / "campaign.json").read_bytes() == before        # nothing to run: nothing rewritten
    assert (published / "report.md").exists() == (verb == "benchmark")  # benchmark renders the report again


def test_resume_of_a_published_copy_with_a_run_to_do_asks_for_upstream(published):
    result = published / "runs" / "04-upstream-s42-r0" / "result.json"
    result.write_text(result.read_text()[:100])                        # damaged: it must run again
    before = (published / "campaign.json").read_bytes()
    proc = cli("run", "--resume", str(published), "--quiet")
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert "runs to do (04-upstream-s42-r0)" in line and "resume with --upstream URL|PATH" in line
    assert "92d63d4e8bb4df75c3b71618f31ddde2378b2bcd" in line
    assert (published / "campaign.json").read_bytes() == before
    # --upstream is honoured: the recorded commit is fetched from where it says (here a folder that does not exist)
    proc = cli("run", "--resume", str(published), "--quiet", "--upstream", str(published / "no-clone"))
    assert proc.returncode == 2, proc.stderr
    assert f"upstream source {published / 'no-clone'} does not exist" in one_error_line(proc)
    assert (published / "campaign.json").read_bytes() == before


# ---------------------------------------------------------------- 7. one process per campaign

def test_a_campaign_being_run_cannot_be_resumed_twice(root):
    from harness.lock import exclusive
    before = _starts(root)
    (root / "c1" / RESULT).write_text("{")                  # damaged: a resume would run it again
    with exclusive(root / "c1" / "campaign.lock", "held by this test"):
        proc = cli("run", "--resume", str(root / "c1"), "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert "is being run by another process" in one_error_line(proc)
    assert _starts(root) == before


# ---------------------------------------------------------------- 8. published files are readable

def test_results_and_reports_are_readable_by_others(root, tmp_path):
    pub = tmp_path / "pub" / "c1"
    old = os.umask(0o022)                   # the usual umask, whatever this machine's is (the CLI inherits it)
    try:
        proc = cli("report", str(root / "c1"), "--out", str(pub), "--no-history")
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    published = [p for p in pub.rglob("*") if p.is_file()]
    assert pub / "report.md" in published and any(p.suffix == ".svg" for p in published)
    for path in [root / "c1" / "campaign.json", root / "c1" / RESULT, *published]:
        assert path.stat().st_mode & 0o044 == 0o044, (path, oct(path.stat().st_mode))


# ---------------------------------------------------------------- 9. parity of runs that did not train the same budget

PARITY_REPORT = REPO / "reports" / "20261125-135618-smoke-parity"     # a published ours/upstream pair (real files)


@pytest.mark.parametrize("damage, needle", [
    (None, None),
    (lambda d: d["data"].__setitem__("tokenizer_sha256", "0" * 64), "data.tokenizer_sha256"),
    (lambda d: d["budget"].__setitem__("warmdown_ratio", 0.4), "budget.warmdown_ratio"),
])
def test_parity_from_a_campaign_whose_budgets_differ_gives_no_verdict(tmp_path, damage, needle):
    cdir = tmp_path / "pair"
    shutil.copytree(PARITY_REPORT, cdir)
    (tmp_path / "broken").mkdir()                           # a damaged campaign beside it breaks nothing
    (tmp_path / "broken" / "campaign.json").write_text("[]")
    if damage:
        _edit(cdir / "runs" / "02-upstream-s42-r0" / "result.json", damage)
    proc = cli("parity", "--from", str(cdir))
    if damage is None:                      # the same files, untouched: the published verdict stands
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "parity: within tolerance" in proc.stdout
        return
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("parity:")]
    assert len(lines) == 1 and "no verdict: the two runs did not train the same budget" in lines[0], proc.stdout
    assert needle in lines[0] and "within tolerance" not in proc.stdout and "Traceback" not in proc.stderr
    assert Campaign.load(cdir).comparison["parity"]["status"] == "unmatched"


# ---------------------------------------------------------------- 10. no arm process outlives a killed harness

STUCK_ARM = r'''
import os, subprocess, sys, time
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])   # a grandchild in its group
with open(sys.argv[1] + ".tmp", "w") as fh:
    fh.write(f"{os.getpid()} {helper.pid}")
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(300)
'''


def _gone(pids: list[int], within_s: float) -> bool:
    import psutil
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.1)
    return False


def _trainer_pids(harness, pidfile: Path | None, within_s: float = 120) -> list[int]:
    """The arm's pids once it runs: from the file the stuck arm writes, else our trainer among the children."""
    import psutil
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and harness.poll() is None:
        if pidfile is not None and pidfile.exists():
            return [int(p) for p in pidfile.read_text().split()]
        if pidfile is None:
            found = []
            for kid in psutil.Process(harness.pid).children(recursive=True):
                try:
                    if "models.train" in " ".join(kid.cmdline()):
                        found.append(kid.pid)
                except psutil.Error:  # a short-lived helper that exited (or is a zombie) meanwhile
                    pass
            if found:
                return found
        time.sleep(0.1)
    raise AssertionError(f"no trainer started: {harness.communicate(timeout=5)}")


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signals are Linux-only")
@pytest.mark.parametrize("arm", ["command", "ours"])
def test_sigkilled_harness_takes_its_arm_processes_with_it(tmp_path, workspace, arm):
    pidfile = tmp_path / "pids" if arm == "command" else None
    stuck = tmp_path / "stuck_arm.py"
    stuck.write_text(STUCK_ARM)
    args = ["--impl", "command", "--command", f"{{python}} {stuck} {pidfile}"] if arm == "command" else \
           ["--impl", "ours", "--set", "num_iterations=100000", "--timeout", "600"]
    harness = subprocess.Popen([sys.executable, "-m", "harness", "run", "--preset", "tiny", "--out",
                                str(tmp_path / "out"), "--workspace", str(workspace), "--quiet", *args],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        pids = _trainer_pids(harness, pidfile)
        harness.kill()                                     # SIGKILL: no handler of the harness runs
        harness.wait(timeout=10)
        assert _gone(pids, within_s=5), f"arm processes {pids} outlived the harness"
    finally:
        for pid in [harness.pid, *pids]:                   # never leave this test's processes behind
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        harness.wait(timeout=10)


# ---------------------------------------------------------------- 11. a full disk ends the run cleanly

DISK_ARM = r'''
import os, sys, time
pidfile, mode, filler = sys.argv[1], sys.argv[2], sys.argv[3]
with open(pidfile, "w") as fh:
    fh.write(str(os.getpid()))
if mode == "print":                      # the harness's log.txt meets the full disk
    while True:
        print("x" * 200, flush=True)
else:                                    # the arm fills the disk; the harness's telemetry.jsonl meets it
    try:
        with open(filler, "wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
    except OSError:
        pass
    time.sleep(300)
'''


@pytest.fixture
def small_disk(tmp_path):
    """A 192 KiB tmpfs at tmp_path/disk (needs root and mount; skipped with the reason otherwise)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a small tmpfs needs Linux, root and mount")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(disk)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.parametrize("mode, writer", [("print", "log.txt"), ("fill", "telemetry.jsonl")])
def test_a_full_disk_stops_the_run_with_one_line_and_keeps_the_campaign(small_disk, tmp_path, workspace, mode,
                                                                        writer):
    arm = tmp_path / "disk_arm.py"
    arm.write_text(DISK_ARM)
    pidfile = tmp_path / "arm.pid"
    out = small_disk / "out"
    t0 = time.monotonic()
    proc = cli("run", "--preset", "tiny", "--impl", "command", "--out", str(out), "--campaign-id", "c",
               "--workspace", str(workspace), "--quiet", "--timeout", "600",
               "--command", f"{{python}} {arm} {pidfile} {mode} {small_disk / 'filler'}", timeout=300)
    assert time.monotonic() - t0 < 120                     # stopped at once, not at the 600 s timeout
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = one_error_line(proc)
    assert line.startswith("nanochat-bench: error: disk full writing ") and writer in line, line
    assert f"nanochat-bench run --resume {out / 'c'}" in line and "Traceback" not in proc.stdout
    assert _gone([int(pidfile.read_text())], within_s=5)   # the arm was stopped
    campaign = Campaign.load(out / "c")                    # what was written before is whole
    assert campaign.runs[0].status == "pending" or campaign.runs[0].status == "failed"


# ---------------------------------------------------------------- 12. untrusted text is data in every output format

HOSTILE = "Error: <img src=x onerror=alert(1)> | `tick` [click](javascript:alert(1)) &lt;b&gt;"
HOSTILE_ARM = f'''
import sys
print("```")                                        # a log line that would close a code fence
print({HOSTILE!r})
print("# a heading?")
sys.exit(1)
'''


def test_untrusted_text_is_escaped_in_the_report_and_the_readme(tmp_path, workspace):
    arm = tmp_path / "hostile_arm.py"
    arm.write_text(HOSTILE_ARM)
    budget = tmp_path / "x|<b>y`z.toml"                      # the preset name comes from the file name
    budget.write_bytes(TINY)
    out = tmp_path / "out"
    proc = cli("run", "--budget-toml", str(budget), "--impl", "command", "--command", f"{{python}} {arm} '<i>|'",
               "--out", str(out), "--campaign-id", "c", "--workspace", str(workspace), "--quiet")
    assert proc.returncode == 1, proc.stderr
    _edit(out / "c" / RESULT.replace("toy", "command"),
          lambda d: d["provenance"].__setitem__("upstream_ref", "<b>ref</b>|`x`\n# h"))
    pub = tmp_path / "reports" / "c"
    proc = cli("report", str(out / "c"), "--out", str(pub), "--no-history")
    assert proc.returncode == 0, proc.stderr
    full_md = (pub / "report.md").read_text()
    assert "\n```\n" + HOSTILE + "\n# a heading?\n````\n" in full_md   # the log as it was, in a fence it cannot close
    md = re.sub(r"(?ms)^````text$.*?^````$", "", full_md)    # outside code blocks nothing is markup
    html = (pub / "report.html").read_text()
    for raw in ("<img", "<b>ref", "<i>"):
        assert raw not in md and raw not in html, raw
    assert "[click](javascript" not in md and "[click\\](javascript" in md   # no link made of the error text
    assert "&lt;img src=x onerror=alert(1)&gt;" in md and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "\\`tick\\`" in md                                # no code span opened by the error text
    assert not any(line.startswith("# h") for line in md.splitlines())
    table_rows = [line for line in md.splitlines() if line.startswith("| upstream ref")]
    assert table_rows and all(line.count(" | ") == 1 for line in table_rows)     # its own pipe escaped, one row
    # the README lists only ours-vs-upstream campaigns (this one is command-only), so its row is rendered directly
    block = findings_block([(pub, findings_record.read(pub / "report.json"))], tmp_path)
    row = [line for line in block.splitlines() if "y" in line and line.startswith("| x")]
    assert row and "<b>" not in row[0] and "x\\|&lt;b&gt;y\\`z" in row[0], block
