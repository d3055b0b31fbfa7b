"""The metric registry: one entry (plus the code that measures it) puts a metric in the comparison, every report
table and the history; the built-in metrics are each defined once."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness import metrics
from harness.compare import compare_campaign_dir
from harness.history import History, trend_frame
from harness.metrics import THROUGHPUT, Metric
from harness.report.context import build_context
from harness.report.load import load_campaign

CAMPAIGN = Path(__file__).parent / "fixtures" / "campaign_handmade"


@pytest.fixture
def dummy():
    """A made-up metric, measured by its own ``read``: tokens per optimizer step."""
    metric = metrics.register(Metric(
        "tokens_per_step", "tokens/step", "tok", THROUGHPUT, section="throughput", title="tokens per step (dummy)",
        tracked=frozenset({"table"}), read=lambda r: r.summary.tokens / r.summary.steps if r.summary.steps else None))
    yield metric
    metrics.unregister(metric.name)


@pytest.fixture
def campaign(tmp_path) -> Path:
    return Path(shutil.copytree(CAMPAIGN, tmp_path / "campaign"))


def test_a_registered_metric_is_in_the_comparison(dummy, campaign):
    entry = compare_campaign_dir(campaign).metric("tokens_per_step")
    assert entry.label == "tokens/step" and entry.baseline.mean == 256.0 and entry.ratio == 1.0


def test_a_registered_metric_is_in_the_report_tables(dummy, campaign):
    compare_campaign_dir(campaign)
    context = build_context(load_campaign(campaign))
    row = next(r for r in context["throughput"]["rows"] if r[0] == "tokens per step (dummy)")
    assert row[2].startswith("256") and row[2].endswith("(3)") and row[4].startswith("1.000×")
    speed = next(t for t in context["runs"]["tables"] if t["title"] == "Speed")   # its runs table: the section's
    assert any(h.startswith("tokens/step") for h in speed["header"])
    assert all(len(r) == len(speed["header"]) for r in speed["rows"])


def test_a_registered_metric_is_in_the_history(dummy, campaign):
    with History(":memory:") as h:
        h.record_campaign(campaign)
        points = h.points(metric="tokens_per_step")
        frame = trend_frame(h.points())
    assert {p.implementation for p in points} == {"ours", "upstream"} and {p.value for p in points} == {256.0}
    assert "tokens_per_step" in frame.columns


def test_unregistering_removes_it_everywhere(campaign):
    assert "tokens_per_step" not in compare_campaign_dir(campaign, save=False).metrics


def test_every_builtin_metric_reads_a_summary_field():
    from dataclasses import fields

    from harness.results import Summary
    names = {f.name for f in fields(Summary)}
    assert [m.name for m in metrics.all_metrics()
            if m.read is None and not m.per_target and m.name not in names] == []


def test_a_per_target_metric_reads_the_comparisons_per_run_map_not_the_summary():
    from types import SimpleNamespace
    m = metrics.get("time_to_target_s")
    run = SimpleNamespace(run_id="r1", summary=SimpleNamespace(time_to_target_s=99.0))
    assert m.per_target and m.value(run) is None
    assert m.value(run, {"r1": {"time_to_target_s": 12.5}}) == 12.5 and m.value(run, {"r2": {}}) is None


def test_a_bad_entry_is_refused_with_the_field_and_the_fix():
    with pytest.raises(ValueError, match="section='speed'; use one of"):
        Metric("x", "x", "", THROUGHPUT, section="speed")
