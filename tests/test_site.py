"""The static site: reports/index.html lists published campaigns with verdicts, links and trend charts;
`serve` answers on localhost."""
from __future__ import annotations

import shutil
import threading
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.history import History
from harness.report.render import write_report
from harness.results import Campaign
from harness.site import build_index, serve, trend_history

CAMPAIGN = Path(__file__).parent / "fixtures" / "campaign_handmade"  # hand-made curves, real harness records
CID = "20260710-120000-tiny-handmade"


class IndexParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.charts, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a":
            self.links.append(a["href"])
        if tag == "figure":
            self.charts.append(a.get("data-chart"))

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site") / "reports"
    write_report(CAMPAIGN, root / CID)
    return root


def parse_index(path: Path) -> IndexParser:
    p = IndexParser()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def test_index_lists_each_campaign_with_verdict_and_working_links(site):
    page = parse_index(build_index(site))
    text = " ".join(page.text)
    assert CID in text and "ours is faster: 1.087×" in text
    assert f"{CID}/report.html" in page.links and f"{CID}/report.md" in page.links
    assert all((site / href).is_file() for href in page.links)


def test_index_draws_no_trend_from_a_single_campaign(site):
    page = parse_index(build_index(site))
    assert page.charts == []   # one point per series is not a trend
    assert "One campaign so far (no trend chart yet): tiny on fixture-host/" in " ".join(page.text)


def test_trends_include_campaigns_from_the_history_database(site, tmp_path):
    older = tmp_path / "older"
    shutil.copytree(CAMPAIGN, older)
    campaign = Campaign.load(older)
    campaign.campaign_id, campaign.created_utc = "20260701-tiny-older", "2026-07-01T00:00:00Z"
    campaign.save(older)
    with History(tmp_path / "h.sqlite") as h:
        h.record_campaign(older)  # in the history only, not published
    with trend_history(site, tmp_path / "h.sqlite") as merged:
        ids = [p.campaign_id for p in merged.points(implementation="ours", metric="tokens_per_s")]
    assert ids == ["20260701-tiny-older", CID]  # oldest first: the history's campaign, then the published one
    html = build_index(site, tmp_path / "h.sqlite").read_text(encoding="utf-8")
    assert html.count("<figure") == 3   # tokens/s, final BPB, peak RSS of the one preset, over two campaigns
    assert "2026-07-01 0123456" in html and "2026-07-10 0123456" in html   # x ticks: date and our commit


def test_a_missing_reports_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="publish a report first"):
        build_index(tmp_path / "nope")


def test_serve_answers_on_localhost(site):
    server = serve(site, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200 and b"nanochat-bench reports" in r.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{CID}/report.html", timeout=10) as r:
            assert b'<section id="verdict">' in r.read()
    finally:
        server.shutdown()
        server.server_close()
