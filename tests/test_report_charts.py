"""Charts: matplotlib SVG that can be inlined, is reproducible, and never shares element ids across charts."""
from __future__ import annotations

import re
from pathlib import Path

from harness.report import fmt
from harness.report.charts import Series, line_chart
from harness.report.curves import curves
from harness.report.load import load_campaign

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def two_arms() -> list[Series]:
    return [Series("upstream s42 r0", "upstream", [0, 10, 20], [3.3, 2.9, 2.7]),
            Series("ours s42 r0", "ours", [0, 10, 20], [3.3, 2.91, 2.71])]


def test_chart_is_inline_svg_with_drawn_lines():
    svg = line_chart("bpb", "BPB", "step", "bpb", two_arms())
    assert svg.startswith("<svg") and "<?xml" not in svg and "DOCTYPE" not in svg
    assert len(re.findall(r"<path [^>]*d=\"M", svg)) >= 2


def test_chart_without_points_is_none():
    assert line_chart("empty", "t", "x", "y", [Series("a", "ours")]) is None


def test_same_data_gives_the_same_svg():
    assert line_chart("bpb", "t", "x", "y", two_arms()) == line_chart("bpb", "t", "x", "y", two_arms())


def test_two_charts_on_one_page_share_no_element_id():
    ids_a = set(re.findall(r' id="([^"]+)"', line_chart("a", "t", "x", "y", two_arms())))
    ids_b = set(re.findall(r' id="([^"]+)"', line_chart("b", "t", "x", "y", two_arms())))
    assert ids_a and ids_b and not ids_a & ids_b


def test_log_scale_chart_labels_its_ticks_as_powers_of_ten():
    svg = line_chart("d", "t", "x", "y", [Series("|d|", "d", [1, 2, 3], [1e-7, 1e-5, 1e-3])], logy=True)
    exponents = re.findall(r"font-size: 7px[^>]*>−</tspan>\s*<tspan[^>]*>(\d)</tspan>", svg)
    assert {"7", "5", "3"} <= set(exponents)


def test_formatting_says_na_for_unmeasured_and_uses_binary_units():
    assert fmt.num(None) == fmt.nbytes(None) == fmt.ratio(None) == "n/a"
    assert fmt.nbytes(3 * 2 ** 30) == "3.00 GiB" and fmt.nbytes(512) == "512 B"
    assert fmt.ratio(1.0871, [1.0807, 1.0957]) == "1.087× [1.081, 1.096]"
    assert fmt.mean_std(5641.6, 0.53, "tok/s") == "5,642 ± 0.53 tok/s"


def test_time_axes_say_which_clock_a_lock_step_campaign_uses():
    charts, _ = curves(load_campaign(REPORTS / "20261203-074041-smoke"))        # lock-step rounds
    svg = {c["name"]: c["svg"] for c in charts}
    assert "lock-step pauses taken out" in svg["val_bpb_time"]
    assert "lock-step pauses included" in svg["host_memory"]
    charts, _ = curves(load_campaign(REPORTS / "20261202-230333-bf16-tiny"))    # runs one after another
    assert charts and not any("lock-step" in c["svg"] for c in charts)
