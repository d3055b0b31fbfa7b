"""The campaign report: rendered from the committed fixture campaign, never from a re-run."""
from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pytest

from harness.report.render import write_report
from harness.report import findings
from harness.report.context import build_context
from harness.report.load import ReportInputError, load_campaign
from harness.report.render import render_html, render_markdown
from harness.results import Campaign, RunResult

FIXTURES = Path(__file__).parent / "fixtures"
CAMPAIGN = FIXTURES / "campaign_handmade"  # hand-made: synthetic curves, real harness code (see its script)
SECTIONS = {"verdict", "metrics", "budget", "environment", "runs", "curves", "parity", "failed", "raw-data"}
CHARTS = {"step_time", "tokens_per_s", "val_bpb_time", "val_bpb_step", "train_loss", "difference", "host_memory"}


class PageParser(HTMLParser):
    """Collects what the tests look at: section ids, chart figures and their SVG paths, links, scripts."""

    def __init__(self):
        super().__init__()
        self.sections, self.charts, self.links, self.scripts, self.external = [], {}, [], 0, []
        self._chart = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id"))
        if tag == "figure" and "data-chart" in a:
            self._chart = a["data-chart"]
            self.charts[self._chart] = 0
        if tag == "path" and self._chart and a.get("d"):
            self.charts[self._chart] += 1
        if tag == "a":
            self.links.append(a.get("href"))
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if (a.get(key) or "").startswith(("http:", "https:", "//")):
                self.external.append(a[key])

    def handle_endtag(self, tag):
        if tag == "figure":
            self._chart = None


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "published"
    write_report(CAMPAIGN, out)
    return out


def parse(path: Path) -> PageParser:
    p = PageParser()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def test_markdown_equals_the_expected_file(rendered):
    # expected_report.md was rendered by this code and read by a person: it catches changes, not wrong numbers (the
    # next test derives the headline number from the raw events, without the harness)
    assert (rendered / "report.md").read_text(encoding="utf-8") == \
        (FIXTURES / "expected_report.md").read_text(encoding="utf-8")


def test_headline_ratio_is_the_one_the_raw_events_give(rendered):
    # per run: the batch's tokens over the median step time of the steps after the first 2 (the report's stated
    # rule), leaving out steps that also ran an eval (their dt holds it); per arm: the mean over runs that reached
    # their final event; headline: ours / upstream, 3 decimals
    batch = json.loads((CAMPAIGN / "campaign.json").read_text())["budget"]["total_batch_size"]
    per_arm: dict[str, list[float]] = {"ours": [], "upstream": []}
    for run in sorted((CAMPAIGN / "runs").iterdir()):
        events_file = run / "events.jsonl"
        records = [json.loads(line) for line in events_file.read_text().splitlines()] if events_file.exists() else []
        if not any(r["event"] == "final" for r in records):
            continue
        evals = {r["step"] for r in records if r["event"] == "eval"}
        dts = sorted(r["dt_s"] for r in records if r["event"] == "step" and r["step"] >= 2 and r["step"] not in evals)
        mid = len(dts) // 2
        median = dts[mid] if len(dts) % 2 else (dts[mid - 1] + dts[mid]) / 2
        per_arm["ours" if "-ours-" in run.name else "upstream"].append(batch / median)
    ratio = (sum(per_arm["ours"]) / len(per_arm["ours"])) / (sum(per_arm["upstream"]) / len(per_arm["upstream"]))
    assert (len(per_arm["ours"]), len(per_arm["upstream"])) == (2, 3)
    verdict = (rendered / "report.md").read_text(encoding="utf-8").split("## Verdict")[1].split("##")[0]
    assert f"{ratio:.3f}×" in verdict


def test_html_has_every_section(rendered):
    page = parse(rendered / "report.html")
    assert SECTIONS <= set(page.sections), SECTIONS - set(page.sections)


def test_html_is_self_contained_with_drawn_charts(rendered):
    page = parse(rendered / "report.html")
    assert page.scripts == 0 and page.external == []
    assert set(page.charts) == CHARTS | {"parity_loss_diff"}
    assert all(n > 5 for n in page.charts.values()), page.charts


def test_raw_data_links_resolve_inside_the_published_folder(rendered):
    page = parse(rendered / "report.html")
    local = [h for h in page.links if h and not h.startswith("#")]
    assert "campaign.json" in local and any(h.endswith("log.txt") for h in local)
    assert all((rendered / h).is_file() for h in local), [h for h in local if not (rendered / h).is_file()]


def test_failed_run_shows_its_error_and_log_tail(rendered):
    md = (rendered / "report.md").read_text(encoding="utf-8")
    assert "### 05-ours-s42-r2 (ours s42 r2): timeout" in md
    assert "process tree killed" in md.split("## Failed runs")[1]


def test_report_json_carries_the_findings_as_numbers(rendered):
    f = json.loads((rendered / "report.json").read_text(encoding="utf-8"))
    assert f["schema_version"] == 2 and f["report"] == "report.html"
    assert f["campaign_id"] == "20260710-120000-tiny-handmade" and (f["baseline"], f["candidate"]) == ("upstream", "ours")
    assert round(f["tokens_per_s"]["ratio"], 3) == 1.087 and f["tokens_per_s"]["verdict"] == "faster"
    assert f["bpb_parity"] == {"within": True, "tolerance_rel": 0.01}


def test_findings_are_formatted_only_when_shown(rendered):
    cells = findings.cells(findings.read(rendered / "report.json"))
    assert cells["tokens_per_s"].startswith("1.087×") and cells["bpb_parity"] == "within 1.0 %"


def test_a_findings_file_of_the_old_version_names_the_command_that_rewrites_it(tmp_path):
    (tmp_path / "report.json").write_text('{"campaign_id": "x", "tokens_per_s": "1.0×"}', encoding="utf-8")
    with pytest.raises(findings.FindingsError, match="re-render it with `nanochat-bench report"):
        findings.read(tmp_path / "report.json")


def test_rendering_twice_gives_the_same_bytes(rendered, tmp_path):
    again = write_report(CAMPAIGN, tmp_path / "again")
    for name in ("report.html", "report.md", "charts/train_loss.svg"):
        assert (tmp_path / "again" / name).read_bytes() == (rendered / name).read_bytes(), name
    assert again.html.name == "report.html"


def test_rendering_leaves_the_source_campaign_untouched(rendered):
    assert not (CAMPAIGN / "report.html").exists() and not (CAMPAIGN / "charts").exists()


def test_a_missing_context_field_fails_loudly():
    context = build_context(load_campaign(CAMPAIGN))
    del context["energy"]
    with pytest.raises(jinja2.UndefinedError, match="energy"):
        render_html(context)
    with pytest.raises(jinja2.UndefinedError, match="energy"):
        render_markdown(context)


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "campaign"
    shutil.copytree(CAMPAIGN, dst)
    return dst


def test_a_comparison_without_a_required_field_names_it(tmp_path):
    dst = _copy(tmp_path)
    campaign = Campaign.load(dst)
    del campaign.comparison["metrics"]
    campaign.save(dst)
    with pytest.raises(ReportInputError, match="comparison has no 'metrics'"):
        write_report(dst)


def test_a_directory_without_campaign_json_is_a_one_line_error(tmp_path):
    with pytest.raises(ReportInputError, match="no campaign.json here") as e:
        write_report(tmp_path)
    assert "\n" not in str(e.value)


def test_html_escapes_text_from_results(tmp_path):
    dst = _copy(tmp_path)
    path = dst / "runs/05-ours-s42-r2/result.json"
    r = RunResult.load(path)
    r.error = "<img src=x onerror=alert(1)> died"
    r.save(path)
    html = write_report(dst).html.read_text(encoding="utf-8")
    assert "&lt;img src=x onerror=alert(1)&gt; died" in html and "<img src=x" not in html


def test_a_campaign_without_comparison_still_renders(tmp_path):
    dst = _copy(tmp_path)
    campaign = Campaign.load(dst)
    campaign.comparison = None
    campaign.save(dst)
    md = write_report(dst).markdown.read_text(encoding="utf-8")
    assert "No comparison" in md and "## Exact parity" not in md and "| 5,642 ± 0.53 (2) |" in md


def test_re_rendering_removes_charts_no_longer_drawn(tmp_path):
    out = tmp_path / "published"
    write_report(CAMPAIGN, out)
    (out / "charts" / "val_bpb_tokens.svg").write_text("<svg/>")   # drawn by an older version
    files = write_report(CAMPAIGN, out)
    assert sorted((out / "charts").glob("*.svg")) == sorted(files.charts)


PARITY_REPORT = Path(__file__).resolve().parents[1] / "reports" / "20261125-135618-smoke-parity"   # published


def test_a_parity_campaign_leads_with_same_model_its_rules_worst_step_and_worst_tensor():
    verdict = build_context(load_campaign(PARITY_REPORT))["verdict"]
    items = {i["key"]: i for i in verdict["items"]}
    assert [i["key"] for i in verdict["items"]][:2] == ["same_model", "speed"]
    assert verdict["headline"].startswith("Exact parity: within tolerance;")
    lines = " ".join(items["same_model"]["lines"])
    assert "within 0.0001 relative" in lines and "worst step 35" in lines
    assert "worst tensor value_embeds.3.weight" in lines and "0 of 35 tensors identical" in lines
    assert items["same_model"]["status"] == "warn"   # within the rule, but weights differ by 0.64 %


def test_a_dirty_source_tree_is_a_warning_in_the_verdict_block():
    verdict = build_context(load_campaign(PARITY_REPORT))["verdict"]
    source = next(i for i in verdict["items"] if i["key"] == "source")
    assert source["status"] == "warn" and source["text"].startswith("DIRTY: ours cbfa599c10-dirty")
    assert verdict["status"] == "warn"


def test_a_tiny_relative_difference_is_not_printed_as_zero_percent():
    verdict = build_context(load_campaign(PARITY_REPORT))["verdict"]
    same = " ".join(next(i for i in verdict["items"] if i["key"] == "same_model")["lines"])
    assert "relative difference 2.3e-08" in same and "0.00 %" not in same


def test_the_matched_quality_slot_shows_a_metric_the_comparison_has(tmp_path):
    # issue 14's metrics (time to target, compute multiplier) appear in the verdict block from the comparison alone
    dst = _copy(tmp_path)
    campaign = Campaign.load(dst)
    entry = dict(campaign.comparison["metrics"]["tokens_per_s"], label="time to target")
    campaign.comparison["metrics"]["time_to_target_s"] = entry
    campaign.save(dst)
    items = build_context(load_campaign(dst))["verdict"]["items"]
    slot = next(i for i in items if i["key"] == "matched_quality")
    assert slot["text"].startswith("time to target: ours ÷ upstream 1.087×")
