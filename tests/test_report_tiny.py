"""The report of a REAL tiny campaign (tests/fixtures/campaign_tiny, see its PROVENANCE.md): real events,
telemetry, logs and comparison from both arms give every section and every curve."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.history import History
from harness.report.render import write_report
from tests.test_report import CHARTS, SECTIONS, parse

CAMPAIGN = Path(__file__).parent / "fixtures" / "campaign_tiny"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "published"
    write_report(CAMPAIGN, out)
    return out


def test_every_section_and_curve_is_drawn_from_real_runs(rendered):
    page = parse(rendered / "report.html")
    assert SECTIONS <= set(page.sections)
    assert CHARTS <= set(page.charts)
    assert all(n > 5 for n in page.charts.values()), page.charts


def test_parity_and_audit_of_the_real_pair_are_reported(rendered):
    md = (rendered / "report.md").read_text(encoding="utf-8")
    assert "**Parity: within tolerance**" in md
    assert "Both arms trained under the same budget" in md
    assert "| 10 | 3.633527 | 3.633527 | 0 | 0 |" in md  # val BPB at the last eval, side by side


def test_published_copy_names_no_local_upstream_path(rendered):
    for path in rendered.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".txt", ".md", ".html"):
            assert "/.mirror/" not in path.read_text(encoding="utf-8"), path


def test_both_arms_of_the_real_campaign_enter_the_history():
    with History(":memory:") as h:
        h.record_campaign(CAMPAIGN)
        impls = {p.implementation for p in h.points(metric="final_val_bpb")}
    assert impls == {"ours", "upstream"}
