"""The report's charts, chosen for its two questions (same model? faster?), from measured runs only.

Speed: the step-time distribution per arm (ms/step over steady-state steps, box plots) and throughput by step
(steady-state steps, so the y axis is not stretched by the compile step). Same model: validation BPB by step and
against wall-clock time (the curve time-to-target reads from), training loss, and the difference panel (ours −
upstream, training loss and val BPB per step, means over each arm's measured runs). Memory: the process tree's
RSS (and GPU memory where measured) over time, each line ending where its process ended.

Each chart becomes ``{"name", "title", "svg", "file"}`` in the context: the HTML page inlines ``svg``, the
Markdown file links ``file`` (the same SVG written beside it). A chart with no data is left out and named in
``missing`` so the report says so instead of drawing an empty frame.
"""
from __future__ import annotations

import statistics

from harness.adapters import registry as arms_registry
from harness.report.charts import Series, box_chart, line_chart, panels_chart
from harness.report.load import CampaignData, RunData

MIB = 2 ** 20


def run_label(run: RunData) -> str:
    r = run.result
    return f"{r.implementation} s{r.seed} r{r.repeat}"


def measured(data: CampaignData) -> list[RunData]:
    """The runs the charts draw: measured repeats (warm-up runs fill caches, they are not measurements)."""
    return [run for run in data.runs if run.result.measured]


def _series(data: CampaignData, xy) -> list[Series]:
    out = []
    for run in measured(data):
        x, y = xy(run)
        out.append(Series(label=run_label(run), group=run.result.implementation, x=x, y=y))
    return out


def _skip(data: CampaignData) -> int:
    return int(data.campaign.budget.get("steady_state_skip") or 0)


def steady_steps(run: RunData, skip: int) -> list:
    """Steps after the first ``skip`` (start-up and compile) that did not also run an eval (their dt holds it)."""
    evals = {e.step for e in run.evals}
    return [s for s in run.steps if s.step >= skip and s.step not in evals and s.dt_s is not None]


def _bpb_by_step(run: RunData):
    return [e.step for e in run.evals], [e.val_bpb for e in run.evals]


def _bpb_by_time(run: RunData):
    evals = [e for e in run.evals if e.t_s is not None]
    return [e.t_s for e in evals], [e.val_bpb for e in evals]


def _loss(run: RunData):
    steps = [s for s in run.steps if s.loss is not None]
    return [s.step for s in steps], [s.loss for s in steps]


def _tokens_per_s(skip: int):
    def xy(run: RunData):
        steps = [s for s in steady_steps(run, skip) if s.tokens_per_s is not None]
        return [s.step for s in steps], [s.tokens_per_s for s in steps]
    return xy


def _memory(key: str):
    def xy(run: RunData):
        rows = [t for t in run.telemetry if t.get(key) is not None and t.get("t_s") is not None]
        while rows and not rows[-1][key]:   # the sample after the process exited reads 0: the line ends before it
            rows.pop()
        return [t["t_s"] for t in rows], [t[key] / MIB for t in rows]
    return xy


def _robust_range(series: list[Series]) -> tuple[float, float] | None:
    """The y range of the middle 98 % of the points with a margin: one slow step does not flatten the rest."""
    ys = sorted(y for s in series for y in s.y)
    if len(ys) < 10:
        return None
    lo, hi = ys[len(ys) // 100], ys[-1 - len(ys) // 100]
    pad = (hi - lo) * 0.15 or abs(hi) * 0.05 or 1.0
    return lo - pad, hi + pad


def _step_time_chart(data: CampaignData) -> dict | None:
    skip = _skip(data)
    groups: dict[str, list[float]] = {}
    for run in measured(data):
        if run.result.ok:
            groups.setdefault(run.result.implementation, []).extend(s.dt_s * 1000 for s in steady_steps(run, skip))
    svg = box_chart("step_time", f"Step time per arm (steady-state steps: step ≥ {skip}, eval steps left out)",
                    "ms/step", groups)
    return svg and _chart("step_time", "Step-time distribution per arm (ms/step)", svg)


def _difference_chart(data: CampaignData) -> dict | None:
    """Ours − upstream per step: the mean training loss (nats) and mean val BPB (bits/byte) of each arm."""
    base, cand = arms_registry.BASELINE, arms_registry.CANDIDATE
    runs = [r for r in measured(data) if r.result.ok]
    panels = []
    for ylabel, xy in (("Δ training loss (nats)", _loss), ("Δ val BPB (bits/byte)", _bpb_by_step)):
        a, b = _mean_by_step(runs, cand, xy), _mean_by_step(runs, base, xy)
        steps = sorted(set(a) & set(b))
        series = [Series(label=f"{cand} − {base}", group=cand, x=steps, y=[a[s] - b[s] for s in steps])]
        panels.append((ylabel, series))
    svg = panels_chart("difference", f"Difference per step: {cand} − {base} (mean over measured runs; 0 = same)",
                       "step", panels)
    return svg and _chart("difference", f"Difference per step ({cand} − {base})", svg)


def _mean_by_step(runs: list[RunData], impl: str, xy) -> dict[int, float]:
    values: dict[int, list[float]] = {}
    for run in runs:
        if run.result.implementation == impl:
            for x, y in zip(*xy(run)):
                values.setdefault(x, []).append(y)
    return {x: statistics.fmean(v) for x, v in values.items()}


def _chart(name: str, title: str, svg: str) -> dict:
    return {"name": name, "title": title, "svg": svg, "file": f"charts/{name}.svg"}


def curves(data: CampaignData) -> tuple[list[dict], list[str]]:
    """The drawable charts, in page order, and the titles of the ones without data."""
    skip = _skip(data)
    charts, missing = [], []

    def add(name, title, chart):
        (charts.append(chart) if chart else missing.append(title))

    add("step_time", "Step-time distribution per arm", _step_time_chart(data))
    tps = _series(data, _tokens_per_s(skip))
    add("tokens_per_s", "Throughput by step", _line("tokens_per_s", f"Throughput by step (steady state: step ≥ {skip})",
                                                    "step", "tokens/s", tps, ylim=_robust_range(tps)))
    # lock-step arms: their records' t_s has the pauses taken out, the telemetry samples' t_s is the wall clock
    paused = any((run.result.lockstep_paused_s or 0) > 0 for run in measured(data))
    running_x = "seconds since the arm started" + (" (running time: lock-step pauses taken out)" if paused else "")
    wall_x = "seconds since the arm started" + (" (wall clock: lock-step pauses included)" if paused else "")
    add("val_bpb_time", "Validation BPB against wall-clock time",
        _line("val_bpb_time", "Validation BPB against wall-clock time", running_x,
              "val BPB (bits/byte)", _series(data, _bpb_by_time)))
    add("val_bpb_step", "Validation BPB by step", _line("val_bpb_step", "Validation BPB by step", "step",
                                                         "val BPB (bits/byte)", _series(data, _bpb_by_step)))
    add("train_loss", "Training loss", _line("train_loss", "Training loss (debiased EMA)", "step", "loss (nats)",
                                             _series(data, _loss)))
    add("difference", "Difference per step", _difference_chart(data))
    add("host_memory", "Host memory over time",
        _line("host_memory", "Host memory (RSS, process tree) over time", wall_x, "MiB",
              _series(data, _memory("rss_bytes"))))
    add("gpu_memory", "GPU memory over time",
        _line("gpu_memory", "GPU memory used over time", wall_x, "MiB",
              _series(data, _memory("gpu_mem_used_bytes"))))
    return charts, missing


def _line(name: str, title: str, xlabel: str, ylabel: str, series: list[Series], **kw) -> dict | None:
    svg = line_chart(name, title, xlabel, ylabel, series, **kw)
    return svg and _chart(name, title, svg)
