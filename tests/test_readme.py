"""The README findings updater: only the text between the markers changes, and a second run changes nothing."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.readme import END, START, ReadmeError, replace_section, update_readme
from harness.report.render import write_report

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN = Path(__file__).parent / "fixtures" / "campaign_handmade"  # hand-made curves, real harness records

BEFORE = "# project\r\n\nintro with trailing spaces   \n\n## Findings\n\n"
AFTER = "\n\n## Usage\n\nmore text, unicode ÷ ≈ and no final newline"


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site") / "reports"
    write_report(CAMPAIGN, root / "20260710-120000-tiny-handmade")
    return root


def readme_with_markers(tmp_path: Path, inside: str = "\nold findings\n") -> Path:
    path = tmp_path / "README.md"
    path.write_bytes((BEFORE + START + inside + END + AFTER).encode("utf-8"))
    return path


def test_findings_table_names_preset_machine_shas_ratios_bpb_and_report(tmp_path, reports):
    readme = readme_with_markers(tmp_path)
    assert update_readme(readme, reports) is True
    text = readme.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| tiny |"))
    for expected in ("Fixture CPU (hand-made)", "0123456789 / 92d63d4e8b", "1.087× [1.081, 1.096] faster",
                     "2.6088 / 2.6083", "within 1.0 %", "reports/20260710-120000-tiny-handmade/report.html"):
        assert expected in row, expected


def test_everything_outside_the_markers_stays_byte_identical(tmp_path, reports):
    readme = readme_with_markers(tmp_path)
    update_readme(readme, reports)
    data = readme.read_bytes()
    assert data.startswith((BEFORE + START).encode("utf-8")) and data.endswith((END + AFTER).encode("utf-8"))
    assert b"old findings" not in data


def test_running_twice_gives_the_same_file(tmp_path, reports):
    readme = readme_with_markers(tmp_path)
    update_readme(readme, reports)
    first = readme.read_bytes()
    assert update_readme(readme, reports) is False
    assert readme.read_bytes() == first


def test_missing_markers_are_a_clear_error(tmp_path, reports):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n", encoding="utf-8")
    with pytest.raises(ReadmeError, match="needs exactly one <!-- findings:start -->") as e:
        update_readme(readme, reports)
    assert "\n" not in str(e.value) and readme.read_text(encoding="utf-8") == "# no markers here\n"


def test_markers_in_the_wrong_order_are_refused():
    with pytest.raises(ReadmeError, match="comes before"):
        replace_section(f"a {END} b {START} c", "x")


def test_no_published_report_says_how_to_publish(tmp_path):
    text = replace_section(f"{START}{END}", "\nnothing\n")
    assert text == f"{START}\nnothing\n{END}"
    readme = readme_with_markers(tmp_path)
    (tmp_path / "empty").mkdir()               # an existing folder without reports (a missing one is an error)
    update_readme(readme, tmp_path / "empty")
    assert "No published campaign yet" in readme.read_text(encoding="utf-8")


def test_readme_verb_updates_then_reports_up_to_date(tmp_path, reports):
    readme = readme_with_markers(tmp_path)
    cmd = [sys.executable, "-m", "harness", "readme", "--readme", str(readme), "--reports", str(reports)]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert first.returncode == second.returncode == 0, first.stderr
    assert "updated" in first.stdout and "already up to date" in second.stdout


def test_readme_verb_without_markers_exits_2_in_one_line(tmp_path, reports):
    readme = tmp_path / "README.md"
    readme.write_text("# none\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "harness", "readme", "--readme", str(readme), "--reports",
                          str(reports)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "findings:start" in out.stderr


@pytest.fixture(scope="module")
def dirty_reports(tmp_path_factory) -> Path:
    """The fixture campaign published as if it had run from a tree with uncommitted changes."""
    import json
    import shutil
    from harness.results import RunResult
    src = tmp_path_factory.mktemp("dirty") / "campaign"
    shutil.copytree(CAMPAIGN, src)
    for path in src.glob("runs/*/result.json"):
        r = RunResult.load(path)
        r.provenance.ours_dirty = True
        r.save(path)
    root = src.parent / "reports"
    write_report(src, root / "20260710-120000-tiny-handmade")
    assert json.loads((root / "20260710-120000-tiny-handmade" / "report.json").read_text())["ours_dirty"] is True
    return root


def test_a_dirty_campaign_is_published_only_when_allowed_then_kept(tmp_path, dirty_reports):
    readme = readme_with_markers(tmp_path)
    before = readme.read_bytes()
    cmd = [sys.executable, "-m", "harness", "readme", "--readme", str(readme), "--reports", str(dirty_reports)]
    refused = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "dirty tree (0123456789-dirty)" in refused.stderr and "--allow-dirty" in refused.stderr
    assert readme.read_bytes() == before
    allowed = subprocess.run(cmd + ["--allow-dirty"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert allowed.returncode == 0, allowed.stderr
    text = readme.read_text(encoding="utf-8")
    assert "| 0123456789-dirty / 92d63d4e8b |" in text and "uncommitted changes" in text
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)   # already published
    assert again.returncode == 0 and "already up to date" in again.stdout, again.stderr


def test_readme_of_the_committed_reports_changes_nothing(tmp_path):
    # what `nanochat-bench readme` does on a clean checkout: the findings are in sync with reports/
    readme = tmp_path / "README.md"
    readme.write_bytes((ROOT / "README.md").read_bytes())
    (tmp_path / "reports").symlink_to(ROOT / "reports")
    assert update_readme(readme, tmp_path / "reports") is False


def test_a_fast_setting_campaign_gets_its_own_row_label():
    from harness.report.identity import preset_label
    assert preset_label("smoke", {"fast_setting": True}) == "smoke + fast setting"
    assert preset_label("smoke", {"fast_setting": False}) == preset_label("smoke", {}) == "smoke"
